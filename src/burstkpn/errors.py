"""The project's one error type: what the user did wrong, in one line."""


class BurstKPNError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The CLI prints it as ``burstkpn: error: <message>`` and exits with status 2;
    anything else escaping a command is a bug in burstkpn.
    """
