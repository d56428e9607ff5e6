"""The report says, per reconstruction system, whether its generator is pretrained or fitted here, and how long."""

from __future__ import annotations

import json

import pandas as pd

from pipeline.reporting import inputs, sections


def test_each_system_says_where_its_generator_comes_from(tmp_path):
    recon = pd.DataFrame({"paradigm": ["vocoder", "vocoder", "codec", "diffusion", "codec"],
                          "system": ["hifigan_universal", "world", "encodec_6kbps", "diffusion_s0.5", "encodec_3kbps"]})
    (tmp_path / "fit_codec.json").write_text(json.dumps(
        {"stage": "fit_codec", "source": "fitted", "trained": True, "steps": 200, "clips": 2500, "seconds": 141.3,
         "threads": 2, "device": "cpu"}))
    fits = inputs.load_fits([tmp_path / "fit_codec.json", tmp_path / "fit_diffusion.json"])  # the second is absent
    table = sections.generator_origins(recon, fits).set_index("system")["generator"]
    assert table["hifigan_universal"].startswith("pretrained HiFi-GAN")
    assert "no weights" in table["world"]
    assert table["encodec_6kbps"] == table["encodec_3kbps"]
    assert table["encodec_6kbps"].startswith("fitted on this corpus by fit_codec: 200 steps on 2500 clips in 141 s")
    assert table["diffusion_s0.5"] == "not recorded"
    page = "\n".join(sections.reconstruction_section(recon, fits).parts)
    assert "fitted on this corpus by fit_codec" in page and "pretrained HiFi-GAN" in page


def test_no_fit_metrics_is_no_error():
    assert inputs.load_fits([]) is None
