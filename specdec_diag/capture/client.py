"""Drive a live server with a prompt set and record what it did (``specdec-requests@1``).

Standard library HTTP (``urllib``) in a bounded thread pool: the client is I/O-bound, needs no
connection pooling at these rates, and adds no dependency. ``/metrics`` is scraped before and after
the run into ``metrics.prom`` (two timestamped scrapes) next to ``requests.jsonl``, so a report of the
directory sees the server's own counters for exactly this run (the difference of the two scrapes).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from specdec_diag.capture import engines
from specdec_diag.capture.format import REQUESTS_SCHEMA
from specdec_diag.capture.prompts import Prompt

Progress = Callable[[int, int], None]
METRICS_FILE = "metrics.prom"


class CaptureError(RuntimeError):
    """The server could not be used at all (unreachable, wrong API); one line."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
    """GET (``body`` None) or POST JSON; returns (status, bytes). HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _get_json(url: str, timeout: float = 5.0) -> Any:
    try:
        status, raw = http(url, timeout=timeout)
        return json.loads(raw) if status == 200 else None
    except (OSError, ValueError):
        return None


def detect_server(base: str) -> dict[str, Any]:
    """Which engine serves ``base``: llama.cpp answers ``/props``, SGLang ``/get_server_info``, vLLM
    ``/version``; anything else is a plain OpenAI-compatible server (e.g. TRT-LLM: name it with
    --engine). Returns {"engine", "api", "model", "server"} (server: what the engine said about itself)."""
    props = _get_json(base + "/props")
    if isinstance(props, dict) and ("default_generation_settings" in props or "build_info" in props):
        params = (props.get("default_generation_settings") or {}).get("params") or {}
        keep = {k: props.get(k) for k in ("model_path", "total_slots", "build_info", "n_ctx") if k in props}
        keep["speculative"] = {k: v for k, v in params.items() if str(k).startswith("speculative")}
        return {"engine": "llama.cpp", "api": "llamacpp", "model": props.get("model_path"), "server": keep,
                "k": params.get("speculative.n_max")}
    info = _get_json(base + "/get_server_info")
    if isinstance(info, dict):
        keep = {k: info.get(k) for k in ("model_path", "speculative_algorithm", "speculative_num_steps",
                                         "speculative_num_draft_tokens", "version") if k in info}
        return {"engine": "sglang", "api": "sglang", "model": info.get("model_path"), "server": keep,
                "k": info.get("speculative_num_draft_tokens")}
    models = _get_json(base + "/v1/models")
    model = None
    if isinstance(models, dict) and models.get("data"):
        model = (models["data"][0] or {}).get("id")
    version = _get_json(base + "/version")
    if isinstance(version, dict) and "version" in version and model is not None:
        return {"engine": "vllm", "api": "openai", "model": model, "server": version, "k": None}
    if model is None and version is None:
        raise CaptureError(f"{base}: no known server answers (/props, /get_server_info, /v1/models)")
    return {"engine": "openai", "api": "openai", "model": model, "server": version, "k": None}


def scrape_metrics(base: str, out_dir: Path, first: bool) -> str | None:
    """Append one ``/metrics`` scrape to ``metrics.prom`` under a time line (``# <UTC> scrape_time=``).

    Both scrapes go in one file on purpose: ingest differences successive scrapes within a file into
    an ``interval`` row and the report uses that, so counters the server had before the capture
    (earlier traffic) are not counted. Returns the file name, None when the server has no /metrics."""
    t = time.time()
    try:
        status, raw = http(base + "/metrics", timeout=10.0)
    except OSError:
        return None
    if status != 200 or not raw.strip():
        return None
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(out_dir / METRICS_FILE, "w" if first else "a", encoding="utf-8") as fh:
        fh.write(f"# {stamp} scrape_time={t:.3f}\n" + raw.decode("utf-8", "replace").rstrip("\n") + "\n")
    return METRICS_FILE


def _llamacpp_tokenize(base: str, p: Prompt, timeout: float) -> Prompt:
    """Text -> ids with llama-server's ``/tokenize`` (special tokens as ``/completion`` would add them),
    so the capture records the exact ids; the text is kept. On failure the text is sent as is."""
    try:
        status, raw = http(base + "/tokenize", {"content": p.prompt, "add_special": True}, timeout=timeout)
        ids = json.loads(raw).get("tokens") if status == 200 else None
    except (OSError, ValueError):
        ids = None
    if isinstance(ids, list) and ids and all(isinstance(t, int) for t in ids):
        return Prompt(tuple(ids), p.prompt if isinstance(p.prompt, str) else p.text)
    return p


def _one(base: str, api: str, engine: str, i: int, p: Prompt, s: engines.Sampling, model: str | None,
         timeout: float) -> dict[str, Any]:
    seed = None if s.seed is None else s.seed + i
    if api == "llamacpp" and isinstance(p.prompt, str):  # record the ids: the server tokenizes for us
        p = _llamacpp_tokenize(base, p, timeout)
    body = engines.build_body(api, p.prompt, s, model=model, seed=seed)
    rec: dict[str, Any] = {
        "type": "request", "index": i, "status": "ok", "error": None,
        "prompt": p.prompt if isinstance(p.prompt, str) else p.text,
        "prompt_token_ids": None if isinstance(p.prompt, str) else list(p.prompt),
        "sampling": {**s.as_dict(), "seed": seed}, "started_at": _now(),
    }
    t0 = time.perf_counter()
    try:
        status, raw = http(base + engines.ENDPOINTS[api], body, timeout=timeout)
        resp = json.loads(raw) if raw else {}
        if status != 200:
            msg = resp.get("error", resp) if isinstance(resp, dict) else raw[:200]
            raise CaptureError(f"HTTP {status}: {json.dumps(msg)[:300]}")
        got = engines.read_response(api, engine, resp)
    except (OSError, ValueError, CaptureError) as exc:
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}"[:500],
                   latency_ms=(time.perf_counter() - t0) * 1e3)
        return rec
    rec["latency_ms"] = (time.perf_counter() - t0) * 1e3
    if got.get("prompt_token_ids") is None:
        got.pop("prompt_token_ids", None)
    if not s.n_probs:
        got.pop("output_probs", None)
    rec.update(got)
    return rec


def capture(base: str, prompts: list[Prompt], out_dir: Path, *, sampling: engines.Sampling,
            concurrency: int = 1, api: str | None = None, engine: str | None = None,
            model: str | None = None, timeout: float = 300.0, scrape: bool = True,
            progress: Progress | None = None) -> dict[str, Any]:
    """Send every prompt (at most ``concurrency`` in flight), write ``out_dir/requests.jsonl`` and the
    metrics scrapes; returns the summary record. Failed requests are recorded, never fatal."""
    base = base.rstrip("/")
    found = detect_server(base) if api is None or engine is None else {"server": None, "k": None}
    engine = engine or found["engine"]
    api = api or found["api"]
    model = model or found.get("model")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "requests.jsonl"
    header = {"type": "header", "schema": REQUESTS_SCHEMA, "engine": engine, "api": api, "url": base,
              "endpoint": engines.ENDPOINTS[api], "model": model, "k": found.get("k"),
              "server": found.get("server"), "sampling": sampling.as_dict(), "concurrency": concurrency,
              "n_prompts": len(prompts), "started_at": _now(), "tool": "specdec-diag capture"}
    before = scrape_metrics(base, out_dir, first=True) if scrape else None
    lock = threading.Lock()
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(header) + "\n")
        fh.flush()
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futs = [pool.submit(_one, base, api, engine, i, p, sampling, model, timeout)
                    for i, p in enumerate(prompts)]
            for done, fut in enumerate(as_completed(futs), 1):
                rec = fut.result()
                with lock:
                    records.append(rec)
                    if engine != "trtllm":
                        fh.write(json.dumps(rec) + "\n")
                        fh.flush()
                if progress:
                    progress(done, len(prompts))
        if engine == "trtllm":
            _trtllm_perf(base, out_dir, records)
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
        after = scrape_metrics(base, out_dir, first=False) if scrape else None
        summary = _summary(records, time.perf_counter() - t0, before, after)
        fh.write(json.dumps(summary) + "\n")
    return summary


def _trtllm_perf(base: str, out_dir: Path, records: list[dict[str, Any]]) -> None:
    """TRT-LLM keeps per-request stats server-side (``return_perf_metrics``); fetch and attach them."""
    perf = _get_json(base + "/perf_metrics", timeout=30.0)
    if isinstance(perf, list) and perf:
        (out_dir / "perf_metrics.json").write_text(json.dumps(perf))
        engines.attach_trtllm_perf(records, perf)


def _summary(records: Iterable[dict[str, Any]], wall_s: float, before: str | None,
             after: str | None) -> dict[str, Any]:
    recs = list(records)
    ok = [r for r in recs if r["status"] == "ok"]
    spec = [r["spec"] for r in ok if r.get("spec")]

    def total(f: str) -> int | None:
        vals = [s[f] for s in spec if s.get(f) is not None]
        return sum(vals) if vals else None

    return {"type": "summary", "finished_at": _now(), "wall_s": round(wall_s, 3), "requests": len(recs),
            "ok": len(ok), "errors": len(recs) - len(ok),
            "output_tokens": sum(len(r.get("output_token_ids") or []) for r in ok),
            "draft_tokens": total("draft_tokens"), "accepted_tokens": total("accepted_tokens"),
            "num_drafts": total("num_drafts"), "metrics_before": before, "metrics_after": after}
