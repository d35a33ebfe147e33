"""Timing of the token check: does a wrong token cost the same whatever it looks like?

    python -m stacktools.bench.auth [--quick] [--json] [--rounds N] [--iterations N]
                                 [--sizes 1,10000]

A benchmark, not a test: it prints numbers and verdicts and exits 0 whatever they are.
For each token-set size it times ``TokenSet.authenticate`` and ``Authenticator.check``
(the bearer header parsed, the token looked up, the failure counted) on:

    right     the right token
    right2    the same again: with ``right`` the noise of two identical cases
    wrong     a wrong token of the right length and prefix (nrs_ + 43 characters)
    wrong2    the same again (another wrong token): noise as above
    near      the right token with its last character changed
    short     a wrong token of 8 characters
    long      a wrong token of 200 characters

In each round every case runs ``--iterations`` calls in one batch (garbage collector
off), the cases in a rotating order that is reversed every other round, so a drift of
the machine's speed does not favour one case. The per-call time of a case is the median
over rounds. A pair's ratio is the median of its per-round ratios (both timed in the
same round), and its spread half their interquartile range.

Noise: the larger of the pair's own spread and what two identical cases show
(|1 - ratio| + spread of right/right2 and of wrong/wrong2). A pair is "same within
noise" when its ratio is within 1 +- noise.

What to expect: ``near`` costs what ``wrong`` costs, because the presented token is
hashed before anything is compared (a near miss and a far miss have unrelated
digests) and the digests are compared with ``hmac.compare_digest``. ``short`` and
``long`` differ from ``wrong`` only by the time SHA-256 takes over a shorter or longer
input (one 64-byte block per 64 characters): that time depends on the length of what
the caller sent, which the caller knows, never on any stored token. In
``Authenticator.check``, (b)/(a) is far from 1 by design: a refusal raises and is
counted in neuros_auth_failures_total, and the 401 says as much as the time does.
"""

from __future__ import annotations

import argparse
import gc
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuros.auth.authenticator import Authenticator, AuthError
from neuros.auth.tokens import (
    ALL_USERS,
    TOKEN_PREFIX,
    Scope,
    TokenEntry,
    TokensDocument,
    TokenSet,
    digest,
    new_token,
)
from neuros.auth.tokens_file import TokensFile, dump
from neuros.metrics import build_metrics

PROG = "python -m stacktools.bench.auth"
CASES = ("right", "right2", "wrong", "wrong2", "near", "short", "long")
# (numerator, denominator, what the ratio says).
PAIRS = (
    ("wrong", "right", "(b)/(a) wrong token of the right length / right token"),
    ("near", "wrong", "near miss (last character changed) / wrong token"),
    ("short", "wrong", "(c)/(b) wrong token of 8 characters / of the right length"),
    ("long", "wrong", "(c)/(b) wrong token of 200 characters / of the right length"),
)
CONTROLS = (("right2", "right"), ("wrong2", "wrong"))
SHORT_LENGTH = 8
LONG_LENGTH = 200
USER = "bench-user"
SIZES = (1, 10_000)
ROUNDS, ITERATIONS = 31, 20_000
QUICK_ROUNDS, QUICK_ITERATIONS = 5, 1_000
TARGETS = ("authenticate", "check")


@dataclass(frozen=True, slots=True)
class Options:
    rounds: int
    iterations: int
    sizes: tuple[int, ...]
    quick: bool
    as_json: bool


def _wrong(length: int) -> str:
    """A random wrong token of ``length`` characters, ``nrs_`` first."""
    return (TOKEN_PREFIX + secrets.token_urlsafe(length))[:length]


def _near(token: str) -> str:
    last = "A" if token[-1] != "A" else "B"
    return token[:-1] + last


def presented_tokens(right: str) -> dict[str, str]:
    """The token each case presents."""
    tokens = {
        "right": right,
        "right2": right,
        "wrong": _wrong(len(right)),
        "wrong2": _wrong(len(right)),
        "near": _near(right),
        "short": _wrong(SHORT_LENGTH),
        "long": _wrong(LONG_LENGTH),
    }
    if len(tokens["wrong"]) != len(right) or right in (tokens["wrong"], tokens["near"]):
        raise RuntimeError("the wrong tokens are not what the cases need")
    return tokens


def _entries(size: int, right: str) -> list[TokenEntry]:
    """``size`` entries, the first one the right token's."""
    return [
        TokenEntry(
            name=f"t{i}",
            sha256=digest(right if i == 0 else new_token()).hex(),
            scopes=list(Scope),
            users=[ALL_USERS],
        )
        for i in range(size)
    ]


def _calls(size: int, folder: Path) -> tuple[dict[str, Callable[[str], object]], str]:
    """The functions timed, on a token set of ``size`` entries, and the right token."""
    right = new_token()
    entries = _entries(size, right)
    tokens = TokenSet(entries)
    path = folder / f"tokens-{size}.yml"
    path.write_text(dump(TokensDocument(tokens=entries)), encoding="utf-8")
    authenticator = Authenticator(TokensFile(path), build_metrics())
    if tokens.authenticate(right) is None or len(authenticator.tokens) != size:
        raise RuntimeError("the right token is not in the set")

    def check(header: str) -> object:
        try:
            return authenticator.check(header, Scope.READINGS_WRITE, USER)
        except AuthError:
            return None

    def authenticate(token: str) -> object:
        return tokens.authenticate(token)

    return {"authenticate": authenticate, "check": check}, right


def time_batch(call: Callable[[str], object], argument: str, iterations: int) -> float:
    """Nanoseconds per call over one batch."""
    start = time.perf_counter_ns()
    for _ in range(iterations):
        call(argument)
    return (time.perf_counter_ns() - start) / iterations


def round_order(cases: Sequence[str], round_number: int) -> list[str]:
    """Rotated by the round number, reversed every other round."""
    shift = round_number % len(cases)
    order = [*cases[shift:], *cases[:shift]]
    return order[::-1] if round_number % 2 else order


def measure(
    call: Callable[[str], object], arguments: dict[str, str], rounds: int, iterations: int
) -> dict[str, list[float]]:
    """Per case, ns per call in each round."""
    for argument in arguments.values():  # warm up every path
        time_batch(call, argument, max(1, iterations // 10))
    samples: dict[str, list[float]] = {case: [] for case in arguments}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for number in range(rounds):
            for case in round_order(list(arguments), number):
                samples[case].append(time_batch(call, arguments[case], iterations))
    finally:
        if enabled:
            gc.enable()
    return samples


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def pair_ratio(
    samples: dict[str, list[float]], numerator: str, denominator: str
) -> dict[str, float]:
    """Median and half-IQR of the per-round ratios numerator / denominator."""
    ratios = [a / b for a, b in zip(samples[numerator], samples[denominator], strict=True)]
    low, high = _quartiles(ratios)
    return {"ratio": statistics.median(ratios), "spread": (high - low) / 2}


def analyse(samples: dict[str, list[float]]) -> dict[str, Any]:
    """Medians, the noise of identical cases, and each pair's ratio and verdict."""
    controls = {f"{a}/{b}": pair_ratio(samples, a, b) for a, b in CONTROLS}
    control_noise = max(abs(1 - c["ratio"]) + c["spread"] for c in controls.values())
    pairs = []
    for numerator, denominator, meaning in PAIRS:
        measured = pair_ratio(samples, numerator, denominator)
        noise = max(measured["spread"], control_noise)
        same = abs(measured["ratio"] - 1) <= noise
        pairs.append(
            {
                "pair": f"{numerator}/{denominator}",
                "meaning": meaning,
                **measured,
                "noise": noise,
                "same_within_noise": same,
                "verdict": verdict(measured["ratio"], same),
            }
        )
    return {
        "median_ns": {case: statistics.median(values) for case, values in samples.items()},
        "controls": controls,
        "noise": control_noise,
        "pairs": pairs,
    }


def verdict(ratio: float, same: bool) -> str:
    if same:
        return "same within noise"
    return f"differs ({(ratio - 1) * 100:+.1f}%)"


def run(opts: Options) -> dict[str, Any]:
    results: dict[str, Any] = {
        "rounds": opts.rounds,
        "iterations": opts.iterations,
        "token_lengths": {},
        "sizes": {},
    }
    with tempfile.TemporaryDirectory(prefix="neuros-bench-auth.") as folder:
        for size in opts.sizes:
            calls, right = _calls(size, Path(folder))
            tokens = presented_tokens(right)
            results["token_lengths"] = {case: len(token) for case, token in tokens.items()}
            by_target: dict[str, Any] = {}
            for target in TARGETS:
                arguments = tokens if target == "authenticate" else _headers(tokens)
                samples = measure(calls[target], arguments, opts.rounds, opts.iterations)
                by_target[target] = analyse(samples)
            results["sizes"][str(size)] = by_target
    return results


def _headers(tokens: dict[str, str]) -> dict[str, str]:
    return {case: f"Bearer {token}" for case, token in tokens.items()}


def format_text(results: dict[str, Any]) -> str:
    lengths = results["token_lengths"]
    lines = [
        f"{results['rounds']} interleaved rounds x {results['iterations']} calls per case;"
        " medians, ns per call",
        "token lengths: " + ", ".join(f"{case} {n}" for case, n in lengths.items()),
    ]
    for size, by_target in results["sizes"].items():
        for target, result in by_target.items():
            name = "TokenSet.authenticate" if target == "authenticate" else "Authenticator.check"
            lines += ["", f"{name}, {size} token(s) in the set"]
            lines.append("    " + "  ".join(f"{c} {result['median_ns'][c]:.0f}" for c in CASES))
            controls = ", ".join(
                f"{pair} {c['ratio']:.3f} +- {c['spread']:.3f}"
                for pair, c in result["controls"].items()
            )
            lines.append(f"    identical cases: {controls}; noise +-{result['noise']:.3f}")
            for pair in result["pairs"]:
                lines.append(
                    f"    {pair['pair']:<12} {pair['ratio']:.3f} (+-{pair['noise']:.3f})"
                    f"  {pair['verdict']:<22} {pair['meaning']}"
                )
    return "\n".join(lines)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of sizes: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(__doc__ or "").split("\n\n", 2)[2].split("\n\nNoise:", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds ({ROUNDS})")
    parser.add_argument("--iterations", type=int, help=f"calls per case per round ({ITERATIONS})")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        help=f"token-set sizes, comma-separated ({','.join(map(str, SIZES))})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ROUNDS} rounds of {QUICK_ITERATIONS} calls: checks that it runs, too"
        " short to judge",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    args = parser.parse_args(argv)
    opts = Options(
        rounds=args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS),
        iterations=args.iterations or (QUICK_ITERATIONS if args.quick else ITERATIONS),
        sizes=args.sizes or SIZES,
        quick=args.quick,
        as_json=args.json,
    )
    if opts.rounds < 2 or opts.iterations < 1:
        parser.error("--rounds must be at least 2 and --iterations at least 1")
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    results = run(opts)
    if opts.as_json:
        print(json.dumps(results, indent=2))
    else:
        print(format_text(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
