import json

from burstkpn.cli import main


def test_demo_writes_images_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "64"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for name in ("clean", "reference", "average", "frame_07"):
        assert (out / f"{name}.png").stat().st_size > 0
    assert 10 < summary["metrics"]["reference"]["psnr"] < 50
    assert "sRGB" in summary["metrics_caption"]
    assert "reference" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--gain", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown gain" in err
