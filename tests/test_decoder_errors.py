"""Bad inputs get one clear line (naming the file), never a traceback; plus the `decode` command,
the policies and the docs' coverage of the trace schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import WORDS, make_pair_dirs

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from typer.testing import CliRunner  # noqa: E402

from specdec_diag.cli import app  # noqa: E402
from specdec_diag.decoder.models import ModelLoadError, load_pair, weights_sha256  # noqa: E402
from specdec_diag.decoder.policies import GammaPolicy  # noqa: E402
from specdec_diag.schema import STEP_FIELDS, TraceError, read_trace  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_missing_model_dir(tmp_path):
    with pytest.raises(ModelLoadError) as e:
        load_pair(tmp_path / "nope", tmp_path / "nope2")
    assert str(e.value) == f"{tmp_path / 'nope'}: target model directory does not exist"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_pair(tmp_path / "empty", tmp_path / "empty")


def test_vocab_content_mismatch(tmp_path):
    swapped = list(WORDS)
    swapped[10], swapped[11] = swapped[11], swapped[10]
    t, d = make_pair_dirs(tmp_path, draft_words=swapped)
    with pytest.raises(ModelLoadError) as e:
        load_pair(t, d)
    msg = str(e.value)
    assert "\n" not in msg and "VOCAB mismatch" in msg
    assert "first differing token id 13: target 'w10', draft 'w11'" in msg


def test_vocab_size_mismatch(tmp_path):
    t, d = make_pair_dirs(tmp_path, draft_words=WORDS[:-5])
    with pytest.raises(ModelLoadError, match=r"VOCAB mismatch: target tokenizer has 96 tokens, draft has 91"):
        load_pair(t, d)


def test_weights_hash_is_content_hash(tiny_pair_dirs, tmp_path):
    import hashlib

    t, _ = tiny_pair_dirs
    files = sorted(p for p in t.iterdir() if p.suffix == ".safetensors")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    assert weights_sha256(t) == h.hexdigest()


def test_truncated_trace(tiny_pair, tmp_path):
    from specdec_diag.decoder.speculative import DecodeConfig, generate

    path = tmp_path / "t.jsonl"
    generate(tiny_pair, ["w1 w2"], DecodeConfig(gamma=2, max_new_tokens=8), trace=str(path))
    lines = path.read_text().splitlines()
    # a crash mid-write: the last line is cut; everything whole before it is kept
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:3]) + "\n" + lines[3][:40] + "\n")
    tr = read_trace(cut)
    assert len(tr.steps) == 2 and tr.dropped and tr.dropped[0][0] == 4 and tr.summary is None
    # a broken line in the middle is an error naming the file and the line
    mid = tmp_path / "mid.jsonl"
    mid.write_text("\n".join([lines[0], lines[1][:30], *lines[2:]]) + "\n")
    with pytest.raises(TraceError) as e:
        read_trace(mid)
    assert str(e.value).startswith(f"{mid}:2: not valid JSON")
    # a step that breaks an invariant
    bad = json.loads(lines[1])
    bad["n_accepted"] = bad["gamma_drafted"] + 1
    inv = tmp_path / "inv.jsonl"
    inv.write_text("\n".join([lines[0], json.dumps(bad), *lines[2:]]) + "\n")
    with pytest.raises(TraceError, match=r"inv.jsonl:2: n_accepted=.* outside"):
        read_trace(inv)


def test_policies():
    h = GammaPolicy("heuristic", 3)
    seq = [h.update(drafted, acc) for drafted, acc in ((3, 3), (5, 5), (7, 2), (6, 0), (5, 0), (4, 0), (3, 0),
                                                       (2, 0), (1, 0))]
    assert seq == [5, 7, 6, 5, 4, 3, 2, 1, 1]
    h.reset()
    assert h.requested() == 3
    c = GammaPolicy("confidence", 8)
    assert c.threshold == 0.4 and c.stops_draft(0.39) and not c.stops_draft(0.41)
    assert not GammaPolicy("constant", 4).stops_draft(0.0)
    with pytest.raises(ValueError, match="unknown gamma policy"):
        GammaPolicy("sometimes", 4)


def test_cli_decode_end_to_end(tiny_pair_dirs, tmp_path):
    t, d = tiny_pair_dirs
    out, pq = tmp_path / "tr.jsonl", tmp_path / "tr.parquet"
    r = CliRunner().invoke(app, ["decode", "--target", str(t), "--draft", str(d), "-p", "w1 w2 w3", "-p", "w4",
                                 "--gamma", "3", "--rule", "sampling", "--temperature", "0.8", "--top-k", "10",
                                 "-n", "10", "--trace", str(out), "--parquet", str(pq)])
    assert r.exit_code == 0, r.output
    for label in ("tokens/s", "acceptance rate", "mean acceptance length", "per-position acceptance"):
        assert label in r.output
    tr = read_trace(out)
    assert tr.summary["outputs"][1]["request"] == 1 and len(tr.summary["outputs"]) == 2
    assert tr.header["sampling"] == {"temperature": 0.8, "top_k": 10, "top_p": 1.0, "do_sample": True}
    assert tr.header["models"]["target"]["sha256"] == weights_sha256(t)
    import polars as pl

    assert pl.read_parquet(pq).height == len(tr.steps)


@pytest.mark.parametrize("args,needle", [
    (["-p", "w1", "--target", "/nonexistent/t", "--draft", "/nonexistent/d"], "/nonexistent/t: target model"),
    (["-p", "w1", "--rule", "magic"], "unknown acceptance rule 'magic'"),
    (["-p", "w1", "--fault", "gremlin"], "unknown fault 'gremlin'"),
    (["-p", "w1", "--policy", "random"], "unknown gamma policy 'random'"),
    (["--gamma", "2"], "no prompt given"),
    (["-p", "w1", "--rule", "sampling", "--temperature", "0"], "temperature must be > 0"),
    (["-p", "w1", "--dtype", "float8"], "unknown dtype 'float8'"),
    pytest.param(["-p", "w1", "--device", "cuda"], "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")),
])
def test_cli_decode_bad_input_one_line(tiny_pair_dirs, args, needle):
    t, d = tiny_pair_dirs
    base = ["decode"] + ([] if "--target" in args else ["--target", str(t), "--draft", str(d)])
    r = CliRunner().invoke(app, base + args)
    assert r.exit_code == 2
    assert needle in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_docs_cover_every_step_field():
    text = (DOCS / "trace-schema.md").read_text()
    missing = [f for f in STEP_FIELDS if f"`{f}`" not in text]
    assert missing == []
    for f in ("acceptance_rate", "mean_acceptance_length", "per_position_acceptance", "fault", "uniforms"):
        assert f"`{f}`" in text
    dec = (DOCS / "decoder.md").read_text()
    from specdec_diag.decoder.faults import FAULTS

    assert all(f"`{name}`" in dec for name in FAULTS)
