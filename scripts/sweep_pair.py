"""The short measured sweep behind the pair's tokenizer size and shapes (docs/model-pair.md).

Two cheap measurements, no training: (1) tokenizer granularity - byte-level BPE of each --vocabs size
trained on the same --chars of training text, characters per token on the HELD-OUT packages (per-token
cross-entropy targets mean different things at different granularity: nats/char = nats/token / this);
(2) cost - random-weight Llama shapes, median CPU ms of a one-token forward with a warm 128-entry KV cache
and of one training step (batch x block tokens), which bounds how many tokens a CPU budget can train on.
The loss side of the sweep is short `train_pair.py --stop-after target --time-budget S` runs.

    nice -n 19 .venv/bin/python scripts/sweep_pair.py --vocabs 512,1024,2048,4096
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_pair import collect_corpus  # noqa: E402
from train_pair_lib import llama, train_tokenizer  # noqa: E402

from specdec_diag.assets import read  # noqa: E402


def tokenizer_sweep(vocabs: list[int], chars: int) -> list[dict]:
    train, held = collect_corpus()
    texts = [read(s.path) for s in train]
    k = max(1, -(-sum(map(len, texts)) // chars))
    held_texts = [read(s.path) for s in held]
    rows = []
    for v in vocabs:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            tok = train_tokenizer(texts[::k], v, Path(d))
            secs = time.perf_counter() - t0
        n = sum(len(x) for x in tok(held_texts, add_special_tokens=False)["input_ids"])
        rows.append({"vocab": v, "heldout_chars_per_token": sum(map(len, held_texts)) / n, "train_s": secs})
        print(rows[-1], flush=True)
    return rows


def shape_cost(layers: int, hidden: int, heads: int, inter: int, vocab: int, block: int, batch: int) -> dict:
    from transformers import DynamicCache

    tok = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    m = llama(vocab, layers, hidden, heads, inter, tok, 1024).eval()
    times = []
    with torch.inference_mode():
        cache = DynamicCache(config=m.config)
        m(input_ids=torch.randint(4, vocab, (1, 128)), cache=cache, use_cache=True)
        for _ in range(30):
            t = time.process_time()
            m(input_ids=torch.tensor([[5]]), position_ids=torch.tensor([[128]]), cache=cache, use_cache=True)
            times.append(time.process_time() - t)
            cache.crop(-1)
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    steps = []
    for _ in range(4):
        x = torch.randint(4, vocab, (batch, block))
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(m(input_ids=x).logits.flatten(0, 1), x.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
        steps.append(time.perf_counter() - t)
    return {"shape": f"{layers} x {hidden}", "params_M": round(sum(p.numel() for p in m.parameters()) / 1e6, 2),
            "forward_ms": round(statistics.median(times) * 1e3, 2),
            "train_step_s": round(statistics.median(steps[1:]), 3),
            "train_tokens_per_s": round(batch * block / statistics.median(steps[1:]))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocabs", default="512,1024,2048,4096")
    ap.add_argument("--chars", type=int, default=8_000_000)
    ap.add_argument("--vocab", type=int, default=1024, help="vocabulary of the shape probe")
    ap.add_argument("--shapes", default="16x128x4x352,16x192x6x512,12x256x8x688,24x128x4x352,1x128x2x352,"
                                        "1x192x3x512,2x192x3x512")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-tokenizers", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_tokenizers:
        tokenizer_sweep([int(v) for v in args.vocabs.split(",")], args.chars)
    for s in args.shapes.split(","):
        L, h, nh, i = (int(x) for x in s.split("x"))
        print(shape_cost(L, h, nh, i, args.vocab, 256, 16), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
