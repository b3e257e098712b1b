"""Write the SGLang, llama.cpp, Prometheus and TensorRT-LLM sample logs under sample_logs/engines/.

Each file imitates the engine's real output format (log_formats.md §3-§6) for one healthy run or one
known failure, so the report, the dashboard and the tests have something real-shaped to chew on.
Deterministic (seeded): rerunning rewrites identical files.

    .venv/bin/python scripts/make_engine_samples_other.py [OUT_DIR]   # default: sample_logs/engines
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

T0 = datetime(2026, 3, 2, 14, 0, 0)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------------------------------
# SGLang
# ---------------------------------------------------------------------------------------------


def _server_args(t: datetime, steps: int, topk: int, ndt: int, max_bs: int, extra: str = "") -> str:
    return (
        f"[{_ts(t)}] server_args=ServerArgs(model_path='Qwen/Qwen3-8B', tokenizer_path='Qwen/Qwen3-8B', "
        f"tp_size=1, dp_size=1, mem_fraction_static=0.8, max_running_requests=128, "
        f"cuda_graph_max_bs={max_bs}, disable_cuda_graph=False, speculative_algorithm='EAGLE3', "
        f"speculative_draft_model_path='AngelSlim/Qwen3-8B_eagle3', speculative_num_steps={steps}, "
        f"speculative_eagle_topk={topk}, speculative_num_draft_tokens={ndt}, decode_log_interval=40{extra})"
    )


def _sglang_decode(
    t: datetime,
    rank: str,
    running: int,
    tokens: int,
    usage: float,
    al: float,
    ar: float | None,
    graph: bool,
    tps: float,
    queue: int,
    style: str = "2025",
    extra: str = "",
) -> str:
    head = f"[{_ts(t)} {rank}] " if rank else f"[{_ts(t)}] "
    if style == "2026":
        sep = "Decode batch, "
    else:
        sep = "Decode batch. "
    acc = f"accept len: {al:.2f}, " + (f"accept rate: {ar:.2f}, " if ar is not None else "")
    return (
        f"{head}{sep}#running-req: {running}, #token: {tokens}, token usage: {usage:.2f}, {acc}{extra}"
        f"cuda graph: {graph}, gen throughput (token/s): {tps:.2f}, #queue-req: {queue}, "
    )


def _sglang_prefill(t: datetime, rank: str, new_tok: int, usage: float, running: int, queue: int) -> str:
    return (
        f"[{_ts(t)} {rank}] Prefill batch. #new-seq: 1, #new-token: {new_tok}, #cached-token: 0, "
        f"token usage: {usage:.2f}, #running-req: {running}, #queue-req: {queue}, "
    )


def _access(t: datetime, rng: random.Random) -> str:
    port = rng.randint(30000, 60000)
    return f'[{_ts(t)}] INFO:     127.0.0.1:{port} - "POST /v1/chat/completions HTTP/1.1" 200 OK'


def sglang_run(
    rng: random.Random,
    *,
    n: int,
    steps: int,
    al_fn,
    batch_fn,
    max_bs: int,
    version: str = "A",
    style: str = "2025",
    usage_fn=None,
    queue_fn=None,
    extra_fn=None,
) -> list[str]:
    """One scheduler log: startup, then prefill/decode lines every ~2 s with access lines between."""
    ndt = steps + 1
    t = T0
    out = [
        _server_args(t, steps, 1, ndt, max_bs, ", disaggregation_mode='decode'" if extra_fn else ""),
        f"[{_ts(t + timedelta(seconds=9))} TP0] Load weight end. type=Qwen3ForCausalLM, "
        "dtype=torch.bfloat16, "
        "avail mem=58.21 GB, mem usage=16.38 GB.",
        f"[{_ts(t + timedelta(seconds=14))} TP0] Capture cuda graph begin. "
        "This can take up to several minutes.",
        f"[{_ts(t + timedelta(seconds=31))}] The server is fired up and ready to roll!",
    ]
    t += timedelta(seconds=40)
    for i in range(n):
        t += timedelta(seconds=2)
        bs = batch_fn(i)
        if i % 7 == 0:
            out.append(
                _sglang_prefill(
                    t,
                    "TP0",
                    rng.randint(200, 1800),
                    (usage_fn(i) if usage_fn else 0.05),
                    max(bs - 1, 0),
                    queue_fn(i) if queue_fn else 0,
                )
            )
        noise = rng.gauss(0, 0.08)
        al = 1.0 if al_fn(i) <= 1.0 else max(1.0, min(steps + 1.0, al_fn(i) + noise))
        if version == "A":
            ar = al / ndt
        elif version == "B":
            ar = (al - 1) / (ndt - 1)
        else:
            ar = None
        graph = bs <= max_bs
        per_req = (26.0 if graph else 8.5) * al * (1 - 0.004 * bs)
        tps = bs * per_req * rng.uniform(0.95, 1.05)
        tokens = bs * (600 + 20 * i)
        usage = usage_fn(i) if usage_fn else min(0.95, tokens / 400_000)
        out.append(
            _sglang_decode(
                t,
                "TP0",
                bs,
                tokens,
                usage,
                al,
                ar,
                graph,
                tps,
                queue_fn(i) if queue_fn else 0,
                style,
                extra_fn(i) if extra_fn else "",
            )
        )
        if rng.random() < 0.3:
            out.append(_access(t, rng))
    return out


def _family_dir(out: Path, family: str) -> Path:
    """The (created) output directory of one engine family."""
    d = out / family
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_line_files(d: Path, files: dict[str, list[str]]) -> None:
    """Write each sample as its lines joined by newlines, with a final newline."""
    for name, lines in files.items():
        (d / name).write_text("\n".join(lines) + "\n")


def write_sglang(out: Path) -> None:
    rng = random.Random(101)
    d = _family_dir(out, "sglang")
    files = {
        # EAGLE3 chain, accept len ~2.8 of max 4: healthy. Rate printed with the bonus (version A).
        "healthy_eagle3.log": sglang_run(
            rng, n=60, steps=3, al_fn=lambda i: 2.8, batch_fn=lambda i: 4 + i % 8, max_bs=32
        ),
        # batch above --cuda-graph-max-bs 2: decode runs eager ("cuda graph: False"), throughput falls
        "unhealthy_no_cuda_graph.log": sglang_run(
            rng, n=50, steps=3, al_fn=lambda i: 2.6, batch_fn=lambda i: 2 if i < 10 else 20, max_bs=2
        ),
        # draft weights wrong: accept len pinned at 1.00 while the printed rate sits at its 1/N floor
        "unhealthy_drafter_broken.log": sglang_run(
            rng, n=40, steps=3, al_fn=lambda i: 1.0, batch_fn=lambda i: 8, max_bs=32
        ),
        # 2026 build (bonus-excluded rate): acceptance collapses half-way through the run
        "unhealthy_collapse.log": sglang_run(
            rng,
            n=60,
            steps=3,
            al_fn=lambda i: 3.0 if i < 30 else 1.25,
            batch_fn=lambda i: 6,
            max_bs=32,
            version="B",
            style="2026",
        ),
        # PD decode node: KV pool nearly full, queue growing; acceptance itself is fine
        "unhealthy_capacity_pd.log": sglang_run(
            rng,
            n=45,
            steps=3,
            al_fn=lambda i: 2.7,
            batch_fn=lambda i: min(30, 8 + i),
            max_bs=32,
            usage_fn=lambda i: min(0.99, 0.55 + 0.012 * i),
            queue_fn=lambda i: max(0, 2 * i - 30),
            extra_fn=lambda i: (
                f"pre-allocated usage: 0.{rng.randint(10, 40)}, #prealloc-req: {i % 3}, "
                f"#transfer-req: {(i // 2) % 4}, #retracted-req: 0, "
            ),
        ),
    }
    _write_line_files(d, files)


# ---------------------------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------------------------


def _elapsed(sec: float) -> str:
    """llama-server's prefix: minutes.seconds.milliseconds.microseconds since start."""
    us = int(round(sec * 1e6))
    m, rest = divmod(us, 60_000_000)
    s, rest = divmod(rest, 1_000_000)
    return f"{m}.{s:02d}.{rest // 1000:03d}.{rest % 1000:03d}"


def llama_server(
    rng: random.Random,
    *,
    requests: int,
    k: int,
    pos_p: list[float],
    impl: str = "draft-simple",
    stop_after: int | None = None,
) -> list[str]:
    """llama-server 2026 log: per-step lines, the per-request summary with per-position rates and the
    cumulative statistics line after every request. pos_p[j] = P(accept position j | j-1 accepted)."""
    sec = 0.05
    out = [
        f"{_elapsed(sec)} I main: loading model 'models/Qwen3-8B-Q8_0.gguf'",
        f"{_elapsed(sec + 2)} I srv    load_model: loaded draft model 'models/Qwen3-0.6B-Q8_0.gguf'",
        f"{_elapsed(sec + 2.5)} I main: server is listening on http://127.0.0.1:8080",
    ]
    sec += 3
    tot = {"calls": 0, "drafts": 0, "accd": 0, "gen": 0, "acc": 0, "dur_g": 0.0, "pos": [0] * k}
    for task in range(0, 2 * requests, 2):
        drafting = stop_after is None or task // 2 < stop_after
        steps = rng.randint(18, 40)
        acc_r = gen_r = 0
        pos_r = [0] * k
        emitted = 0
        for _ in range(steps):
            sec += rng.uniform(0.02, 0.04)
            if not drafting:
                emitted += 1
                continue
            a = 0
            while a < k and rng.random() < pos_p[a]:
                a += 1
            for j in range(a):
                pos_r[j] += 1
            acc_r += a
            gen_r += k
            emitted += a + 1
            out.append(
                f"{_elapsed(sec)} I slot update_slots: id  0 | task {task} | accepted {a}/{k} draft tokens"
            )
        n_drafts = steps if drafting else 0
        eval_ms = steps * 31.0
        out.append(f"{_elapsed(sec)} I slot print_timing: id  0 | task {task} | ")
        out.append(
            f"prompt eval time =     {rng.uniform(40, 90):6.2f} ms /    {rng.randint(20, 90):2d} tokens "
            f"(    1.50 ms per token,   650.00 tokens per second)"
        )
        out.append(
            f"       eval time =    {eval_ms:7.2f} ms /   {emitted:3d} tokens "
            f"({eval_ms / emitted:7.2f} ms per token, {1000 * emitted / eval_ms:8.2f} tokens per second)"
        )
        out.append(f"      total time =    {eval_ms + 60:7.2f} ms /   {emitted + 50:3d} tokens")
        if drafting:
            mal = 1 + acc_r / n_drafts
            pp = ", ".join(f"{c / n_drafts:.3f}" for c in pos_r)
            out.append(
                f"draft acceptance = {acc_r / gen_r:0.5f} ({acc_r:5d} accepted / {gen_r:5d} generated), "
                f"mean acceptance length = {mal:5.2f}, acceptance rate per position = ({pp})"
            )
        tot["calls"] += 1
        tot["drafts"] += n_drafts
        tot["accd"] += pos_r[0]  # drafts with at least one accepted token
        tot["gen"] += gen_r
        tot["acc"] += acc_r
        tot["dur_g"] += n_drafts * rng.uniform(3.5, 4.5)
        tot["pos"] = [a + b for a, b in zip(tot["pos"], pos_r, strict=True)]
        if tot["drafts"]:
            pp = ", ".join(f"{c / tot['drafts']:.3f}" for c in tot["pos"])
            out.append(
                f"statistics {impl:>16s}: #calls(b,g,a) = {tot['calls']:4d} {tot['drafts']:6d} "
                f"{tot['drafts']:6d}, #gen drafts = {tot['drafts']:6d}, #acc drafts = {tot['accd']:6d}, "
                f"#gen tokens = {tot['gen']:6d}, #acc tokens = {tot['acc']:6d}, dur(b,g,a) = "
                f"{0.01 * tot['calls']:.3f}, {tot['dur_g']:.3f}, {0.02 * tot['drafts']:.3f} ms, "
                f"#mean acc len = {1 + tot['acc'] / tot['drafts']:.2f}, #acc rate/pos = ({pp})"
            )
        out.append(
            f"{_elapsed(sec)} I slot      release: id  0 | task {task} | stop processing: "
            f"n_past = {emitted + 60}, truncated = 0"
        )
        sec += rng.uniform(0.5, 2.0)
    return out


def speculative_example(n_predict: int, n_drafted: int, n_accept: int, speed: float) -> list[str]:
    return [
        "llama_model_loader: loaded meta data with 25 key-value pairs and 291 tensors from "
        "models/codellama-34b.Q8_0.gguf (version GGUF V3 (latest))",
        "",
        "",
        "encoded   25 tokens in    0.812 seconds, speed:   30.788 t/s",
        f"decoded {n_predict:4d} tokens in {n_predict / speed:8.3f} seconds, speed: {speed:8.3f} t/s",
        "",
        "n_draft   = 8",
        f"n_predict = {n_predict}",
        f"n_drafted = {n_drafted}",
        f"n_accept  = {n_accept}",
        f"accept    = {100 * n_accept / n_drafted:.3f}%",
        "",
        "draft:",
        "",
        "llama_perf_context_print:        load time =    1201.33 ms",
        "",
        "target:",
        "",
        "llama_perf_context_print:        load time =   12513.36 ms",
    ]


def write_llamacpp(out: Path) -> None:
    rng = random.Random(202)
    d = _family_dir(out, "llamacpp")
    files = {
        "healthy_server.log": llama_server(rng, requests=8, k=4, pos_p=[0.85, 0.8, 0.75, 0.7]),
        # multi-step drafting bug: positions after the first are almost never accepted
        "unhealthy_position_cliff.log": llama_server(
            rng, requests=8, k=4, pos_p=[0.8, 0.03, 0.0, 0.0], impl="draft-mtp"
        ),
        # ngram drafter only active for the first request, then silently stops drafting
        "unhealthy_spec_stops.log": llama_server(
            rng, requests=6, k=4, pos_p=[0.7, 0.6, 0.5, 0.4], impl="ngram-simple", stop_after=1
        ),
        "unhealthy_vocab_mismatch.log": [
            "0.00.050.120 I main: loading model 'models/Qwen2.5-7B-Q8_0.gguf'",
            "0.02.301.004 E common_speculative_are_compatible: draft model vocab must match target model "
            "to use speculation but target vocab size 152064 does not match draft vocab size 32002 - "
            "vocab size mismatch",
            "0.02.301.010 E main: exiting due to model loading error",
        ],
        "healthy_speculative_example.txt": speculative_example(256, 232, 164, 11.8),
        # draft far from the target: 5 % acceptance, slower than plain decoding
        "unhealthy_speculative_low_accept.txt": speculative_example(420, 2240, 140, 3.9),
    }
    _write_line_files(d, files)


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------


def _vllm_scrape(t: datetime, model: str, c: dict, running: int, waiting: int, kv: float) -> list[str]:
    lab = f'engine="0",model_name="{model}"'
    out = [
        f"# scrape {t.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{lab}}} {running:.1f}",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{lab}}} {waiting:.1f}",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f"vllm:kv_cache_usage_perc{{{lab}}} {kv:.4f}",
        "# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.",
        "# TYPE vllm:spec_decode_num_drafts_total counter",
        f"vllm:spec_decode_num_drafts_total{{{lab}}} {c['drafts']:.1f}",
        "# TYPE vllm:spec_decode_num_draft_tokens_total counter",
        f"vllm:spec_decode_num_draft_tokens_total{{{lab}}} {c['draft']:.1f}",
        "# TYPE vllm:spec_decode_num_accepted_tokens_total counter",
        f"vllm:spec_decode_num_accepted_tokens_total{{{lab}}} {c['acc']:.1f}",
        "# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter",
    ]
    out += [
        f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{lab},position="{j}"}} {v:.1f}'
        for j, v in enumerate(c["pos"])
    ]
    return out


def vllm_scrapes(
    rng: random.Random,
    *,
    n: int,
    k: int,
    pos_p: list[float],
    drafts_per: int,
    model: str = "meta-llama/Llama-3.1-8B-Instruct",
) -> list[str]:
    c = {"drafts": 0, "draft": 0, "acc": 0, "pos": [0] * k}
    out: list[str] = []
    for s in range(n):
        for _ in range(drafts_per if s else drafts_per // 2):
            a = 0
            while a < k and rng.random() < pos_p[a]:
                a += 1
            c["drafts"] += 1
            c["draft"] += k
            c["acc"] += a
            for j in range(a):
                c["pos"][j] += 1
        out += _vllm_scrape(
            T0 + timedelta(seconds=15 * s), model, c, rng.randint(6, 14), 0, rng.uniform(0.2, 0.4)
        )
    return out


def write_prometheus(out: Path) -> None:
    rng = random.Random(303)
    d = _family_dir(out, "prometheus")
    files = {
        "healthy_vllm_v1_scrapes.prom": vllm_scrapes(rng, n=6, k=3, pos_p=[0.8, 0.7, 0.6], drafts_per=900),
        "unhealthy_vllm_v1_position_cliff.prom": vllm_scrapes(
            rng, n=5, k=4, pos_p=[0.75, 0.02, 0.0, 0.0], drafts_per=800
        ),
        # speculation configured, but the counters never move while the server is busy
        "unhealthy_vllm_v1_spec_inactive.prom": vllm_scrapes(
            rng, n=4, k=3, pos_p=[0.8, 0.7, 0.6], drafts_per=0
        ),
    }
    lab = 'model_name="facebook/opt-6.7b"'
    files["healthy_vllm_v0_snapshot.prom"] = [
        "# HELP vllm:spec_decode_draft_acceptance_rate Speulative token acceptance rate.",
        "# TYPE vllm:spec_decode_draft_acceptance_rate gauge",
        f"vllm:spec_decode_draft_acceptance_rate{{{lab}}} 0.59",
        "# TYPE vllm:spec_decode_efficiency gauge",
        f"vllm:spec_decode_efficiency{{{lab}}} 0.6",
        "# TYPE vllm:spec_decode_num_accepted_tokens_total counter",
        f"vllm:spec_decode_num_accepted_tokens_total{{{lab}}} 11800.0",
        "# TYPE vllm:spec_decode_num_draft_tokens_total counter",
        f"vllm:spec_decode_num_draft_tokens_total{{{lab}}} 20000.0",
        "# TYPE vllm:spec_decode_num_emitted_tokens_total counter",
        f"vllm:spec_decode_num_emitted_tokens_total{{{lab}}} 15000.0",
    ]
    sg = 'dp_rank="0",engine_type="unified",model_name="Qwen/Qwen3-8B",pp_rank="0",tp_rank="0"'
    sg_lines: list[str] = []
    for s, al in enumerate([2.71, 2.84, 2.66, 2.9]):
        sg_lines += [
            f"# {(T0 + timedelta(seconds=30 * s)).isoformat()}Z",
            "# TYPE sglang:spec_accept_length gauge",
            f"sglang:spec_accept_length{{{sg}}} {al}",
            "# TYPE sglang:spec_accept_rate gauge",
            f"sglang:spec_accept_rate{{{sg}}} {al / 4}",
            f"sglang:num_running_reqs{{{sg}}} {8 + s}.0",
            f"sglang:num_queue_reqs{{{sg}}} 0.0",
            f"sglang:token_usage{{{sg}}} 0.{12 + s}",
        ]
    files["healthy_sglang_gauges.prom"] = sg_lines
    tgi: list[str] = []
    hist = [0, 0, 0, 0]  # steps that accepted 0, 1, 2, 3 medusa tokens (speculate 3)
    sums = 0
    for s in range(3):
        for _ in range(400):
            a = 0
            while a < 3 and rng.random() < [0.7, 0.6, 0.5][a]:
                a += 1
            hist[a] += 1
            sums += a
        cum = [sum(hist[: j + 1]) for j in range(4)]
        tgi += [
            f"# === {(T0 + timedelta(minutes=s)).strftime('%Y-%m-%d %H:%M:%S')} UTC ===",
            "# HELP tgi_request_skipped_tokens Speculated tokens per request",
            "# TYPE tgi_request_skipped_tokens histogram",
        ]
        tgi += [f'tgi_request_skipped_tokens_bucket{{le="{j}.0"}} {cum[min(j, 3)]}' for j in range(4)]  # TGI buckets: 0..speculate
        tgi += [
            f'tgi_request_skipped_tokens_bucket{{le="+Inf"}} {cum[3]}',
            f"tgi_request_skipped_tokens_sum {sums}",
            f"tgi_request_skipped_tokens_count {cum[3]}",
            f"tgi_batch_current_size {4 + s}",
            "tgi_queue_size 0",
        ]
    files["healthy_tgi_medusa.prom"] = tgi
    _write_line_files(d, files)


# ---------------------------------------------------------------------------------------------
# TensorRT-LLM
# ---------------------------------------------------------------------------------------------


def trt_iterations(
    rng: random.Random, *, n: int, k: int, p: float, draft_ms: float, target_ms: float, pinned: bool = False
) -> list[dict]:
    out = []
    t = T0
    for it in range(n):
        t += timedelta(milliseconds=draft_ms + target_ms)
        nreq = rng.randint(2, 8)
        if pinned:  # NaN logits in the verifier: the whole batch accepts all drafts or none
            acc = k * nreq if rng.random() < 0.5 else 0
        else:
            acc = 0
            for _ in range(nreq):
                a = 0
                while a < k and rng.random() < p:
                    a += 1
                acc += a
        total = draft_ms + target_ms * rng.uniform(0.95, 1.05)
        out.append(
            {
                "gpuMemUsage": 70_000_000_000,
                "iter": 1000 + it,
                "iterLatencyMS": round(total, 3),
                "kvCacheStats": {
                    "freeNumBlocks": 4000 - 10 * nreq,
                    "maxNumBlocks": 4000,
                    "tokensPerBlock": 32,
                    "usedNumBlocks": 10 * nreq,
                },
                "numActiveRequests": nreq,
                "numQueuedRequests": 0,
                "specDecodingStats": {
                    "acceptanceLength": round((acc + nreq) / nreq, 4),
                    "draftOverhead": round(draft_ms / total, 4),
                    "iterLatencyMS": draft_ms,
                    "numAcceptedTokens": acc,
                    "numDraftTokens": k * nreq,
                    "numRequestsWithDraftTokens": nreq,
                },
                "timestamp": t.strftime("%m-%d-%Y %H:%M:%S"),
            }
        )
    return out


def write_trtllm(out: Path) -> None:
    rng = random.Random(404)
    d = _family_dir(out, "trtllm")
    healthy = trt_iterations(rng, n=120, k=3, p=0.75, draft_ms=2.0, target_ms=14.0)
    (d / "healthy_iteration_stats.jsonl").write_text("\n".join(json.dumps(o) for o in healthy) + "\n")
    pinned = trt_iterations(rng, n=80, k=4, p=0.0, draft_ms=2.5, target_ms=15.0, pinned=True)
    (d / "unhealthy_pinned_acceptance_length.jsonl").write_text(
        "\n".join(f"[TensorRT-LLM][INFO] {json.dumps(o)}" for o in pinned) + "\n"
    )
    # a big draft model: 60 % of every iteration spent drafting for modest acceptance
    costly = trt_iterations(rng, n=40, k=5, p=0.55, draft_ms=21.0, target_ms=14.0)
    (d / "unhealthy_draft_too_expensive.json").write_text(json.dumps(costly, indent=2) + "\n")
    reqs = []
    for rid in range(1, 21):
        drafted = 3 * rng.randint(30, 90)
        reqs.append(
            {
                "request_id": rid,
                "perf_metrics": {
                    "first_iter": rid * 3,
                    "last_iter": rid * 3 + drafted // 3,
                    "timing_metrics": {"arrival_time": 100.0 + rid, "first_token_time": 100.2 + rid},
                    "speculative_decoding": {
                        "acceptance_rate": 0.0,
                        "total_accepted_draft_tokens": 0,
                        "total_draft_tokens": drafted,
                    },
                },
            }
        )
        acc = int(drafted * rng.uniform(0.55, 0.75))
        sd = reqs[-1]["perf_metrics"]["speculative_decoding"]
        sd.update(total_accepted_draft_tokens=acc, acceptance_rate=round(acc / drafted, 4))
    (d / "healthy_request_perf.jsonl").write_text("\n".join(json.dumps(r) for r in reqs) + "\n")


#: file -> (scenario, codes a correct diagnosis raises at warning/error; "-" for none)
README: dict[str, dict[str, tuple[str, str]]] = {
    "sglang": {
        "healthy_eagle3.log": (
            "EAGLE3 chain (steps 3, N 4), accept len ~2.8, rate printed with the bonus",
            "-",
        ),
        "unhealthy_no_cuda_graph.log": (
            "batch 20 above --cuda-graph-max-bs 2: decode runs without CUDA graphs, throughput falls",
            "NO_CUDA_GRAPH",
        ),
        "unhealthy_drafter_broken.log": (
            "accept len pinned at 1.00 (printed rate sits at its 1/N = 0.25 floor)",
            "DRAFTER_BROKEN",
        ),
        "unhealthy_collapse.log": (
            "2026 format (bonus-excluded rate): acceptance 0.67 collapses to 0.08 half-way",
            "ACCEPTANCE_COLLAPSE",
        ),
        "unhealthy_capacity_pd.log": (
            "PD decode node: KV usage climbs to 0.99 and the queue grows; acceptance fine",
            "CAPACITY_QUEUEING",
        ),
    },
    "llamacpp": {
        "healthy_server.log": (
            "llama-server draft-simple k=4: per-step, per-request and statistics lines",
            "-",
        ),
        "unhealthy_position_cliff.log": (
            "draft-mtp k=4: position 0 accepts ~0.8, later positions almost never",
            "POSITION_CLIFF",
        ),
        "unhealthy_spec_stops.log": (
            "ngram-simple drafts on the first request only, then never again",
            "SPEC_INACTIVE",
        ),
        "unhealthy_vocab_mismatch.log": (
            "draft and target vocabularies differ; server exits",
            "VOCAB_MISMATCH",
        ),
        "healthy_speculative_example.txt": ("speculative example, k=8: 70.7 % acceptance", "-"),
        "unhealthy_speculative_low_accept.txt": (
            "speculative example, k=8, a draft far from the target: 6 % acceptance, MAL 1.5",
            "LOW_ACCEPTANCE",
        ),
    },
    "prometheus": {
        "healthy_vllm_v1_scrapes.prom": ("six vLLM V1 scrapes 15 s apart, k=3, acceptance ~0.57", "-"),
        "unhealthy_vllm_v1_position_cliff.prom": (
            "vLLM V1 k=4: per-position counters stop after position 0",
            "POSITION_CLIFF",
        ),
        "unhealthy_vllm_v1_spec_inactive.prom": (
            "vLLM V1: speculation configured, spec counters never move",
            "SPEC_INACTIVE",
        ),
        "healthy_vllm_v0_snapshot.prom": (
            "vLLM V0 counters, k=4: prefix acceptance 0.50 (the non-prefix gauge says 0.59), MAL 3.0",
            "-",
        ),
        "healthy_sglang_gauges.prom": (
            "SGLang accept-length / accept-rate gauges, accept len ~2.8 of 4",
            "-",
        ),
        "healthy_tgi_medusa.prom": ("TGI Medusa speculate=3: skipped-tokens histogram, MAL ~2.4", "-"),
    },
    "trtllm": {
        "healthy_iteration_stats.jsonl": (
            "iteration stats, k=3, acceptance ~0.6, draft 12 % of each iteration",
            "-",
        ),
        "healthy_request_perf.jsonl": ("per-request perf metrics, acceptance 0.55-0.75", "-"),
        "unhealthy_pinned_acceptance_length.jsonl": (
            "NaN logits in the verifier: acceptance length exactly 1 or k+1 = 5 (log-prefixed lines)",
            "PINNED_ACCEPTANCE_LENGTH",
        ),
        "unhealthy_draft_too_expensive.json": (
            "big draft model: drafting takes 60 % of every iteration for 0.26 acceptance",
            "DRAFT_TOO_EXPENSIVE",
        ),
    },
}

TITLES = {
    "sglang": "SGLang",
    "llamacpp": "llama.cpp",
    "prometheus": "Prometheus snapshot",
    "trtllm": "TensorRT-LLM",
}


def write_readmes(out: Path) -> None:
    """One README per directory: the scenario of each sample and the codes a correct diagnosis raises."""
    for family, table in README.items():
        lines = [
            f"# {TITLES[family]} sample logs",
            "",
            "Written by `scripts/make_engine_samples_other.py` (deterministic). Formats: "
            "docs/ingest-sources-other.md.",
            "",
            "| file | scenario | a correct diagnosis raises |",
            "|---|---|---|",
        ]
        lines += [f"| `{name}` | {what} | {codes} |" for name, (what, codes) in table.items()]
        (out / family / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "sample_logs" / "engines"
    write_sglang(out)
    write_llamacpp(out)
    write_prometheus(out)
    write_trtllm(out)
    write_readmes(out)
    print(f"wrote SGLang, llama.cpp, Prometheus and TensorRT-LLM samples under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
