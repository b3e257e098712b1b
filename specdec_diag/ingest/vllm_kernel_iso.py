"""Dates for :mod:`specdec_diag.ingest.vllm_kernel`: the container runtime's ISO timestamp that may
start a line (``2026-03-14T09:00:10.705000000Z ``, docker ``--timestamps``, kubectl) read as
timestamps.iso_time reads it, and the days of a civil date. Plain functions compiled by
vllm_kernel.prepare (numba), like the kernel's own helpers.
"""

from __future__ import annotations

import numpy as np

#: no ISO date on the line
NO_TIME = np.iinfo(np.int64).min
_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _d(b, p, n):
    """The n ASCII digits at ``p`` as a number, else -1."""
    v = 0
    for i in range(n):
        c = int(b[p + i])
        if c < 48 or c > 57:
            return -1
        v = v * 10 + c - 48
    return v


def days_from_civil(y, m, d):
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def month_days(y, m):
    return _DAYS[m] + (1 if m == 2 and (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 0)


def iso(b, p, e):
    """(UTC epoch us, position after the date and one space) of ``YYYY-MM-DD[T ]HH:MM:SS[.,f{1,9}]
    [Z|+HH:MM|+HHMM] `` at ``p``: the fraction cut to microseconds, the offset subtracted. Anything
    else, or a value polars would not turn into a time (its ``_ISO_HEAD`` capture then ends elsewhere
    or parses to null): (NO_TIME, -1), and the line is left to polars."""
    if p + 20 > e:
        return NO_TIME, -1
    y, mo, dd, hh, mi, ss = _d(b, p, 4), _d(b, p + 5, 2), _d(b, p + 8, 2), _d(b, p + 11, 2), _d(b, p + 14, 2), _d(
        b, p + 17, 2)
    if (b[p + 4] != 45 or b[p + 7] != 45 or (b[p + 10] != 84 and b[p + 10] != 32) or b[p + 13] != 58
            or b[p + 16] != 58 or y < 0 or mo < 1 or mo > 12 or dd < 1 or hh < 0 or hh > 23 or mi < 0 or mi > 59
            or ss < 0 or ss > 59 or dd > month_days(y, mo)):
        return NO_TIME, -1
    q, micro = p + 19, 0
    if q < e and (b[q] == 46 or b[q] == 44):
        n = 0
        while q + 1 + n < e and 48 <= b[q + 1 + n] <= 57:
            if n < 6:
                micro = micro * 10 + int(b[q + 1 + n]) - 48
            n += 1
        if n == 0 or n > 9:
            return NO_TIME, -1
        for _ in range(n, 6):
            micro *= 10
        q += 1 + n
    off = 0
    if q < e and b[q] == 90:
        q += 1
    elif q < e and (b[q] == 43 or b[q] == 45):
        oh = _d(b, q + 1, 2) if q + 3 <= e else -1
        colon = q + 3 < e and b[q + 3] == 58
        om = _d(b, q + 4 if colon else q + 3, 2) if q + (6 if colon else 5) <= e else -1
        if oh < 0 or om < 0 or oh > 23 or om > 59:
            return NO_TIME, -1
        off = (oh * 60 + om) * 60_000_000 * (1 if b[q] == 43 else -1)
        q += 6 if colon else 5
    if q >= e or b[q] != 32:
        return NO_TIME, -1
    us = ((days_from_civil(y, mo, dd) * 24 + hh) * 60 + mi) * 60_000_000 + ss * 1_000_000 + micro
    return us - off, q + 1


HELPERS = ("_d", "days_from_civil", "month_days", "iso")
