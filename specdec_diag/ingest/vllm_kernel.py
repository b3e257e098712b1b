"""Byte-level parser of the two vLLM V1 line shapes that make up big logs, compiled with numba
(:mod:`specdec_diag.ingest._jit`): the ``SpecDecoding metrics:`` line of variants E and D and the
``Avg prompt throughput:`` line, each behind the plain logger prefix
``(Name pid=N) LEVEL MM-DD HH:MM:SS [file.py:N] `` (the process tag optional).

A line is *accepted* only when it has exactly one of these shapes with plain decimal numbers (at
most 15 digits: parsed exactly as polars' string cast parses them) and every check the polars path
makes on it passes with a margin (accepted <= drafted, the printed rate and the per-position sum
agree with the counts, a mean acceptance length >= 1, a valid date): its window row is then fully
determined here. Anything else - another variant, a damaged number, nan, a check failing or too close
to its tolerance to be sure how polars rounds - is left to the polars path, which gives the same rows
as before. Helpers are plain functions turned into numba functions before the kernel compiles
(:func:`prepare`); ``scan_lines.py_func`` runs the whole parser as plain Python (tests).
"""

from __future__ import annotations

import threading

import numpy as np

from specdec_diag.ingest import vllm_kernel_iso as _iso_mod
from specdec_diag.ingest._jit import compile_now, kernel
from specdec_diag.ingest.vllm_kernel_iso import NO_TIME, days_from_civil, iso, month_days

#: kinds of an accepted line (0: not accepted)
V1_E, V1_D, THR = 1, 2, 3
#: no value (a count column's null)
NONE = -1
#: integer columns of an accepted line (offsets are into the batch buffer)
TIME_US, ACC, DRAFT, DEPTH, K, ND, ND_NOTE, RUN, WAIT, PROC_ID, ENG_ID, ATTACHED, PP_COUNT, ISO_US = range(14)
#: the line's scratch: where its process and engine tags are (offset in the batch buffer, length)
PROC_AT, PROC_LEN, ENG_AT, ENG_LEN = range(4)
#: float columns: SpecDecoding, then throughput
MAL, ACC_TPS, DRAFT_TPS, RATE, PROMPT_TPS, GEN_TPS, KV = range(7)
#: distinct process and engine tags a batch may have (lines with more go through polars)
TAGS = 256


def _b(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8).copy()


_SPEC = _b("SpecDecoding metrics: ")
_MAL = _b("Mean acceptance length: ")
_RATE_D = _b("Draft acceptance rate: ")
_DEPTH = _b("Current speculative depth: ")
_ACC_TPS = _b("Accepted throughput: ")
_DRAFT_TPS = _b(" tokens/s, Drafted throughput: ")
_ACC = _b(" tokens/s, Accepted: ")
_DRAFT = _b(" tokens, Drafted: ")
_PP = _b(" tokens, Per-position acceptance rate: ")
_RATE_E = _b("Avg Draft acceptance rate: ")
_ENGINE = _b("Engine ")
_AGG = _b(" Engines Aggregated: ")
_PTPS = _b("Avg prompt throughput: ")
_GTPS = _b(" tokens/s, Avg generation throughput: ")
_RUN = _b(" tokens/s, Running: ")
_WAIT = _b(", Waiting: ")
_KV = _b(", GPU KV cache usage: ")
_REQ = _b(" req")
_PID = _b(" pid=")
_DEBUG, _INFO, _WARNING, _WARN, _ERROR, _CRITICAL = (_b(f"{lv} ") for lv in ("DEBUG", "INFO", "WARNING", "WARN",
                                                                                 "ERROR", "CRITICAL"))
_METRICS = _b("metrics:")
_POW10 = np.array([10.0**i for i in range(16)])
_MARGIN = 1e-9  # a check this close to its tolerance is left to polars (its own float rounding)


def _lit(b, p, e, lit):
    """Position after ``lit`` at ``p``, else -1."""
    n = lit.shape[0]
    if p < 0 or p + n > e:
        return -1
    for i in range(n):
        if b[p + i] != lit[i]:
            return -1
    return p + n


def _digit(c):
    return 48 <= c <= 57


def _digits(b, q, e, m):
    """(``m`` with the ASCII digits from ``q`` appended, end of the digits)."""
    while q < e and _digit(b[q]):
        m = m * 10 + (int(b[q]) - 48)
        q += 1
    return m, q


def _int(b, p, e):
    """(value, end) of 1-15 ASCII digits at ``p``; end -1 if none or too many."""
    if p < 0:
        return 0, -1
    v, q = _digits(b, p, e, 0)
    if q == p or q - p > 15:
        return 0, -1
    return v, q


def _float(b, p, e):
    """(value, end) of ``\\d+(\\.\\d+)?`` with at most 15 digits: mantissa / 10**f, one correctly
    rounded division of two exact doubles, i.e. the nearest double, as polars' cast gives it."""
    if p < 0:
        return 0.0, -1
    m, q = _digits(b, p, e, 0)
    nd = q - p
    if nd == 0:
        return 0.0, -1
    fd = 0
    if q < e and b[q] == 46:
        m, end = _digits(b, q + 1, e, m)
        fd, q = end - q - 1, end
        if fd == 0:
            return 0.0, -1
    if nd + fd > 15:
        return 0.0, -1
    return m / _POW10[fd], q


def _name(b, p, e, proc):
    """End of a run of [A-Za-z0-9_.] starting with a letter (a process name: '-' allowed too) or with
    a letter or '_' (a file name), else -1. No '-' in a file name: no ISO date can hide there."""
    if p < 0:
        return -1
    q = p
    while q < e:
        c = int(b[q])
        if (65 <= c <= 90) or (97 <= c <= 122) or (q > p and (_digit(c) or c == 95 or c == 46 or (proc and c == 45))) \
                or (q == p and not proc and c == 95):
            q += 1
        else:
            break
    return q if q > p else -1


def _two(b, p):
    if _digit(b[p]) and _digit(b[p + 1]):
        return (int(b[p]) - 48) * 10 + int(b[p + 1]) - 48
    return -1


def _level(b, p, e):
    """Position after ``LEVEL `` at ``p`` (the levels the polars path's prefix pattern knows), else -1."""
    if p >= e:
        return -1
    c = b[p]
    if c == 73:
        return _lit(b, p, e, _INFO)
    if c == 87:
        q = _lit(b, p, e, _WARNING)
        return q if q >= 0 else _lit(b, p, e, _WARN)
    if c == 68:
        return _lit(b, p, e, _DEBUG)
    if c == 69:
        return _lit(b, p, e, _ERROR)
    if c == 67:
        return _lit(b, p, e, _CRITICAL)
    return -1


def _prefix(b, s, e, year, amd, at_start, out_i, row, tag):
    """Parse the logger prefix of the line [s, e): the process tag's place into ``tag``, the time
    (epoch us) into slot ``row``; returns the body's start, or -1."""
    p = s
    out_i[ISO_US, row] = NO_TIME
    if p < e and _digit(b[p]):  # a container's ISO date first
        t, p = iso(b, p, e)
        out_i[ISO_US, row] = t
        if p < 0:
            return -1
    if p < e and b[p] == 40:  # "(Name pid=N) "
        q = _name(b, p + 1, e, True)
        q = _lit(b, q, e, _PID)
        _, q = _int(b, q, e)
        if q < 0 or q + 1 >= e or b[q] != 41 or b[q + 1] != 32:
            return -1
        tag[PROC_AT], tag[PROC_LEN] = p + 1, q - p - 1
        p = q + 2
    q = _level(b, p, e)
    if q < 0 or q + 16 > e:
        return -1
    mo, dd, hh, mi, ss = _two(b, q), _two(b, q + 3), _two(b, q + 6), _two(b, q + 9), _two(b, q + 12)
    if (b[q + 2] != 45 or b[q + 5] != 32 or b[q + 8] != 58 or b[q + 11] != 58 or b[q + 14] != 32
            or b[q + 15] != 91 or mo < 1 or mo > 12 or dd < 1 or hh < 0 or hh > 23 or mi < 0 or mi > 59
            or ss < 0 or ss > 59):
        return -1
    if year > 0:  # the year of the anchor, moved across New Year as timestamps.month_day_time does
        md = mo * 100 + dd
        y = year + 1 if (at_start and md < amd) else (year - 1 if (not at_start and md > amd) else year)
        if dd > month_days(y, mo):
            return -1
        out_i[TIME_US, row] = ((days_from_civil(y, mo, dd) * 24 + hh) * 60 + mi) * 60_000_000 + ss * 1_000_000
    p = _name(b, q + 16, e, False)  # "[file.py:N] "
    if p < 0 or p + 1 >= e or b[p] != 58:
        return -1
    _, p = _int(b, p + 1, e)
    if p < 0 or p + 1 >= e or b[p] != 93 or b[p + 1] != 32:
        return -1
    return p + 2


def _end(b, p, e):
    """True when only [ \\t\\r\\n] follows ``p``."""
    if p < 0:
        return False
    while p < e:
        c = b[p]
        if c != 32 and c != 9 and c != 13 and c != 10:
            return False
        p += 1
    return True


def _sep(b, p, e):
    """Position after ", " at ``p``, else -1."""
    if p < 0 or p + 2 > e or b[p] != 44 or b[p + 1] != 32:
        return -1
    return p + 2


def _near(d, tol):
    """|d| > tol undecidable here: too close to the tolerance for another summation order."""
    return abs(d - tol) < _MARGIN


def _v1_checks(acc, draft, mal, ar, depth, total, cnt):
    """The checks of vllm._parse_v1 (all must pass, with a margin) and the num_drafts inference of
    vllm._v1_numbers: (k, num_drafts or NONE, 1 if inferred from the MAL), or k = NONE to reject."""
    if acc > draft or mal < 1.0:  # a MAL below 1 may be the pre-v0.9.0 definition: polars decides
        return NONE, NONE, 0
    tol = 0.006 + 0.0005 * cnt
    d = abs(1.0 + total - mal)
    if d > tol or _near(d, tol):
        return NONE, NONE, 0
    if draft > 0:
        d = abs(ar - 100.0 * acc / draft)
        if d > 0.051 or _near(d, 0.051):
            return NONE, NONE, 0
    k = depth if depth != NONE else cnt
    if k > 0 and draft % k == 0 and draft // k > 0:
        d = abs(1.0 + acc / (draft // k) - mal)
        if _near(d, 0.0051):
            return NONE, NONE, 0
        if d <= 0.0051:
            return k, draft // k, 0
    if mal > 1.0:
        x = acc / (mal - 1.0)
        if x >= 1e15 or _near(x - np.floor(x), 0.5):  # floor(x + 0.5) = round(x) below 2**52
            return NONE, NONE, 0
        ndm = int(np.floor(x + 0.5))
        if ndm > 0:
            d = abs(1.0 + acc / ndm - mal)
            if _near(d, 0.0051):
                return NONE, NONE, 0
            if d <= 0.0051:
                return k, ndm, 1
    return k, NONE, 0


def _v1(b, p, e, out_i, out_f, row, ppv, npp):
    """The SpecDecoding body at ``p`` (variant E, or D with the rate first): fills the row and the
    per-position values from ``ppv[npp]``; returns (kind, values written) or (0, 0)."""
    kind, ar = V1_E, 0.0
    q = _lit(b, p, e, _RATE_D)
    if q >= 0:
        ar, q = _float(b, q, e)
        if q < 0 or q + 3 > e or b[q] != 37:
            return 0, 0
        p, kind = _sep(b, q + 1, e), V1_D
    mal, p = _float(b, _lit(b, p, e, _MAL), e)
    p = _sep(b, p, e)
    depth = NONE
    q = _lit(b, p, e, _DEPTH)
    if q >= 0:
        depth, q = _int(b, q, e)
        p = _sep(b, q, e)
    acc_tps, p = _float(b, _lit(b, p, e, _ACC_TPS), e)
    draft_tps, p = _float(b, _lit(b, p, e, _DRAFT_TPS), e)
    acc, p = _int(b, _lit(b, p, e, _ACC), e)
    draft, p = _int(b, _lit(b, p, e, _DRAFT), e)
    p = _lit(b, p, e, _PP)
    if p < 0:
        return 0, 0
    cnt, total = 0, 0.0
    while p < e and _digit(b[p]):
        if kind == V1_E and (p + 1 >= e or b[p + 1] != 46):  # E: one digit before the point
            return 0, 0
        v, q = _float(b, p, e)
        if q < 0 or b[q - 1] == 46 or v > 1.0:
            return 0, 0
        dot = False
        for i in range(p, q):
            dot = dot or b[i] == 46
        if not dot:
            return 0, 0
        ppv[npp + cnt] = v
        total += v
        cnt += 1
        p = q
        nxt = _sep(b, p, e)
        if kind == V1_E:
            if nxt < 0:
                return 0, 0
            p = nxt
        elif nxt >= 0 and nxt < e and _digit(b[nxt]):
            p = nxt
        else:
            break
    if cnt == 0:
        return 0, 0
    if kind == V1_E:
        ar, p = _float(b, _lit(b, p, e, _RATE_E), e)
        if p < 0 or p >= e or b[p] != 37:
            return 0, 0
        p += 1
    if not _end(b, p, e):
        return 0, 0
    k, nd, note = _v1_checks(acc, draft, mal, ar, depth, total, cnt)
    if k == NONE:
        return 0, 0
    out_i[ACC, row], out_i[DRAFT, row], out_i[DEPTH, row], out_i[K, row], out_i[ND, row] = acc, draft, depth, k, nd
    out_i[ND_NOTE, row], out_i[PP_COUNT, row] = note, cnt
    out_f[MAL, row], out_f[ACC_TPS, row], out_f[DRAFT_TPS, row], out_f[RATE, row] = mal, acc_tps, draft_tps, ar
    return kind, cnt


def _req(b, p, e):
    """Position after " req" or " reqs" at ``p``, else -1."""
    p = _lit(b, p, e, _REQ)
    if p >= 0 and p < e and b[p] == 115:
        p += 1
    return p


def _thr(b, p, e, out_i, out_f, row, tag):
    """The throughput body at ``p`` (an ``Engine N: `` / ``N Engines Aggregated: `` tag first, or
    none): fills the row, returns THR or 0."""
    q = _lit(b, p, e, _ENGINE)
    if q >= 0:
        _, q = _int(b, q, e)
        if q < 0 or q + 2 > e or b[q] != 58 or b[q + 1] != 32:
            return 0
        tag[ENG_AT], tag[ENG_LEN] = p, q - p
        p = q + 2
    elif p < e and _digit(b[p]):
        _, q = _int(b, p, e)
        q = _lit(b, q, e, _AGG)
        if q < 0:
            return 0
        tag[ENG_AT], tag[ENG_LEN] = p, q - 2 - p
        p = q
    ptps, p = _float(b, _lit(b, p, e, _PTPS), e)
    gtps, p = _float(b, _lit(b, p, e, _GTPS), e)
    run, p = _int(b, _lit(b, p, e, _RUN), e)
    wait, p = _int(b, _lit(b, _req(b, p, e), e, _WAIT), e)
    kv, p = _float(b, _lit(b, _req(b, p, e), e, _KV), e)
    if p < 0 or p >= e or b[p] != 37:
        return 0
    p += 1
    while not _end(b, p, e):  # more ", Some hit rate: N%" fields, read by no parser
        p = _sep(b, p, e)
        q = p
        while q >= 0 and q < e and ((65 <= b[q] <= 90) or (97 <= b[q] <= 122) or b[q] == 32):
            q += 1
        if q <= p or q + 2 > e or b[q] != 58 or b[q + 1] != 32 or _lit(b, q - 7, e, _METRICS) >= 0:
            return 0
        _, p = _float(b, q + 2, e)
        if p < 0 or p >= e or b[p] != 37:
            return 0
        p += 1
    out_i[RUN, row], out_i[WAIT, row] = run, wait
    out_f[PROMPT_TPS, row], out_f[GEN_TPS, row], out_f[KV, row] = ptps, gtps, kv
    return THR


def _intern(b, at, n, tab, cnt):
    """Id of the bytes b[at:at+n] in ``tab`` (rows: offset, length), added if new: (id, count);
    id -1 when the table is full."""
    for t in range(cnt[0] - 1, -1, -1):
        if tab[t, 1] == n:
            o, same = tab[t, 0], True
            for i in range(n):
                if b[o + i] != b[at + i]:
                    same = False
                    break
            if same:
                return t
    if cnt[0] == tab.shape[0]:
        return -1
    tab[cnt[0], 0], tab[cnt[0], 1] = at, n
    cnt[0] += 1
    return cnt[0] - 1


def _scan_lines(data, offs, lines, stride, year, amd, at_start):
    """Parse lines ``data[offs[i]:offs[i+1]]`` (numbered ``lines``, in order; ``line // stride`` is
    the file of a batch of files). Returns the kind of each line (0: left to polars) and, for the
    accepted lines in order, the integer and float columns (see the column names above), their
    per-position values, and the tables of distinct process and engine tags (offset, length) that
    PROC_ID / ENG_ID index. ATTACHED: the engine of the throughput line the same process logged last
    before a SpecDecoding line in its file (vllm._attach_engine, among the accepted lines)."""
    n = offs.shape[0] - 1
    kind = np.zeros(n, np.int8)
    out_i = np.empty((14, n), np.int64)
    tag = np.empty(4, np.int64)
    out_f = np.full((7, n), np.nan)
    ppv = np.empty(max(64, 4 * n))
    procs, engs = np.empty((TAGS, 2), np.int64), np.empty((TAGS, 2), np.int64)
    nproc, neng = np.zeros(1, np.int64), np.zeros(1, np.int64)
    last = np.full(TAGS + 1, NONE, np.int64)
    npp, j, file = 0, 0, NONE
    for row in range(n):
        s, e = offs[row], offs[row + 1]
        if npp + (e - s) // 2 + 2 > ppv.shape[0]:
            grown = np.empty(2 * ppv.shape[0] + (e - s))
            grown[:npp] = ppv[:npp]
            ppv = grown
        for c in range(14):
            out_i[c, j] = NONE
        tag[:] = NONE
        p = _prefix(data, s, e, year, amd, at_start, out_i, j, tag)
        if p < 0:
            continue
        q = _lit(data, p, e, _SPEC)
        if q >= 0:
            k, cnt = _v1(data, q, e, out_i, out_f, j, ppv, npp)
        else:
            k, cnt = _thr(data, p, e, out_i, out_f, j, tag), 0
        if k == 0:
            continue
        pid = NONE
        if tag[PROC_LEN] >= 0:
            pid = _intern(data, tag[PROC_AT], tag[PROC_LEN], procs, nproc)
            if pid < 0:
                continue
        eid = NONE
        if tag[ENG_LEN] >= 0:
            eid = _intern(data, tag[ENG_AT], tag[ENG_LEN], engs, neng)
            if eid < 0:
                continue
        if lines[row] // stride != file:
            file = lines[row] // stride
            last[:] = NONE
        if k == THR:
            if eid >= 0:
                last[pid + 1] = eid
        else:
            out_i[ATTACHED, j] = last[pid + 1]
        out_i[PROC_ID, j], out_i[ENG_ID, j] = pid, eid
        kind[row] = k
        npp += cnt
        j += 1
    return kind, out_i[:, :j], out_f[:, :j], ppv[:npp], procs[: nproc[0]], engs[: neng[0]]


_HELPERS = ("_lit", "_digit", "_digits", "_int", "_float", "_name", "_two", "_level", "_prefix", "_end",
            "_sep", "_near", "_v1_checks", "_v1", "_req", "_thr", "_intern")


_prepared: list[bool] = []
_lock = threading.Lock()


def prepare() -> None:
    """Make the helpers numba functions (the kernel calls them compiled); imports numba. Once per
    process, under a lock (scans may parse in threads)."""
    if _prepared:
        return
    with _lock:
        if _prepared:
            return
        for module, names in ((vars(_iso_mod), _iso_mod.HELPERS), (globals(), _HELPERS)):
            for name in names:
                module[name] = compile_now(module[name])
        g = globals()
        g["iso"], g["days_from_civil"], g["month_days"] = _iso_mod.iso, _iso_mod.days_from_civil, _iso_mod.month_days
        _prepared.append(True)


scan_lines = kernel(_scan_lines)
