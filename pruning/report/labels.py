"""Short forms shared by the published files, the CLI's table and the plots: a threshold as
users type it, and each layer's original width."""

from __future__ import annotations

from pruning.results import Results


def threshold_label(threshold: dict[str, float]) -> str:
    """The short form users type on the CLI: `0.1:0.4`, `std<0.4` or `f0.3`."""
    if "fraction" in threshold:
        return f"f{threshold['fraction']:g}"
    if set(threshold) == {"mean", "std"}:
        return f"{threshold['mean']:g}:{threshold['std']:g}"
    if set(threshold) == {"std"}:
        return f"std<{threshold['std']:g}"
    return ",".join(f"{k}={v:g}" for k, v in threshold.items())


def layer_widths(results: Results) -> dict[str, int]:
    """Each layer's original width, recovered from a candidate's kept counts and fractions."""
    widths: dict[str, int] = {}
    for candidate in results.candidates:
        for layer, kept in candidate.kept.items():
            fraction = candidate.kept_fraction.get(layer, 0.0)
            if layer not in widths and fraction > 0:
                widths[layer] = round(kept / fraction)
    return widths
