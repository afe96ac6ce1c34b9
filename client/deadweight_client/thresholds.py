"""The command line's threshold text (`deadweight prune --thresholds`) as the API's objects."""

from __future__ import annotations


def thresholds_from_text(text: str) -> list[dict[str, float]]:
    """`f0.2,f0.4` (fractions), `0.1:0.4,0.5:1` (MEAN:STD for criterion seed) or `0.1,0.2`
    (STD for criterion variance), as the `thresholds` of a job body.

    Raises:
        ValueError: on an empty text or a malformed item, naming it.
    """
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ValueError("thresholds are empty")
    out: list[dict[str, float]] = []
    for item in items:
        try:
            if item.startswith("f"):
                out.append({"fraction": float(item[1:])})
            elif ":" in item:
                mean, std = item.split(":", 1)
                out.append({"mean": float(mean), "std": float(std)})
            else:
                out.append({"std": float(item)})
        except ValueError:
            raise ValueError(
                f"bad threshold {item!r}: use MEAN:STD (0.1:0.4), STD (0.4) or a fraction (f0.3)"
            ) from None
    return out
