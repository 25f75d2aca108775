"""Compound-scaling coefficients (alpha, beta, gamma) and their JSON file format.

EfficientNet (Tan & Le, 2019, §3.3) scales depth by alpha^phi, width by beta^phi and resolution
by gamma^phi, with alpha, beta, gamma >= 1 and alpha * beta^2 * gamma^2 ~= 2, so that FLOPs grow
by about 2^phi. The paper's own triple (1.2, 1.1, 1.15) gives 1.92, 4% under the target: a
tolerance is therefore opt-in, and the deviation is always reported.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from space.errors import UserError, read_json_file

FILE_FORMAT = "effsearch.coefficients"
FILE_VERSION = 2  # 2 added the family (baseline and rounding); 1 is still read


class CoefficientsError(UserError):
    """Invalid coefficients, or a coefficients file that is broken or not ours."""


@dataclasses.dataclass(frozen=True, slots=True)
class Coefficients:
    """Per-phi multipliers for depth (alpha), width (beta) and resolution (gamma).

    Attributes:
        alpha: depth multiplier per unit phi, >= 1.
        beta: width multiplier per unit phi, >= 1.
        gamma: resolution multiplier per unit phi, >= 1.
        target: the intended cost growth per unit phi, alpha * beta^2 * gamma^2.
        tolerance: if set, a relative deviation of the product from `target` larger than this
            is an error; None only reports it (`deviation`).
        provenance: where the coefficients came from (study, dataset, proxy budget, ...);
            not part of equality.
        baseline: the canonical arch string of the phi = 0 network these coefficients were
            found on (its resolution, classes and input channels included), or None.
        resolution_multiple: the rounding of scaled resolutions the search used, or None.
        channel_divisor: the rounding of scaled channels the search used, or None.
            Together with `baseline` these make `space.scale(None, coeffs, phi)` rebuild
            exactly the family that was searched; None means "the caller's or the default".
    """

    alpha: float
    beta: float
    gamma: float
    target: float = 2.0
    tolerance: float | None = dataclasses.field(default=None, compare=False)
    provenance: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False,
                                                             repr=False)
    baseline: str | None = None
    resolution_multiple: int | None = None
    channel_divisor: int | None = None

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "target"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CoefficientsError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 1:
                raise CoefficientsError(f"{name} must be >= 1, got {value}")
            object.__setattr__(self, name, float(value))
        try:
            self.product  # noqa: B018
        except OverflowError:
            raise CoefficientsError(f"alpha*beta^2*gamma^2 overflows for {self.as_tuple()}") \
                from None
        for name in ("resolution_multiple", "channel_divisor"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise CoefficientsError(f"{name} must be an integer >= 1, got {value!r}")
        if self.baseline is not None:
            from space.arch_string import decode, encode  # arch_string does not import us

            if not isinstance(self.baseline, str):
                raise CoefficientsError(f"baseline must be an arch string, got "
                                        f"{self.baseline!r}")
            # Canonical form, so that equal families compare equal.
            object.__setattr__(self, "baseline", encode(decode(self.baseline)))
        if self.tolerance is not None and abs(self.deviation) > self.tolerance:
            raise CoefficientsError(
                f"alpha*beta^2*gamma^2 = {self.product:.4f} is {self.deviation:+.1%} from the "
                f"target {self.target:g} (tolerance {self.tolerance:.1%})")

    @property
    def product(self) -> float:
        """alpha * beta^2 * gamma^2: the nominal cost growth per unit phi."""
        return self.alpha * self.beta**2 * self.gamma**2

    @property
    def deviation(self) -> float:
        """Relative distance of `product` from `target` (paper triple: -0.04)."""
        return self.product / self.target - 1.0

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.alpha, self.beta, self.gamma)

    @property
    def family(self) -> dict[str, Any]:
        """The family fields that are set (baseline, resolution_multiple, channel_divisor)."""
        return {k: v for k in _FAMILY_KEYS if (v := getattr(self, k)) is not None}


_FAMILY_KEYS = ("baseline", "resolution_multiple", "channel_divisor")


PAPER = Coefficients(1.2, 1.1, 1.15)
"""The triple found by the EfficientNet paper's grid search at phi = 1."""


def parse_coefficients(text: str, *, target: float = 2.0,
                       tolerance: float | None = None) -> Coefficients:
    """Reads "1.2,1.1,1.15" or a path to a coefficients JSON file.

    Args:
        text: the triple or the path.
        target: alpha * beta^2 * gamma^2 of a typed triple (a file carries its own).
        tolerance: refuse a typed triple whose product is further than this (relative) from
            `target`; None accepts any. Files are checked against their own target only.
    """
    path = Path(text)
    if path.suffix == ".json" or path.exists():
        return load_coefficients(path)
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3:
        raise CoefficientsError(f"coefficients must be 'alpha,beta,gamma' (e.g. 1.2,1.1,1.15) "
                                f"or a path to a .json file, got '{text}'")
    alpha, beta, gamma = values
    return Coefficients(alpha, beta, gamma, target=target, tolerance=tolerance)


def save_coefficients(coeffs: Coefficients, path: str | Path,
                      provenance: Mapping[str, Any] | None = None) -> Path:
    """Writes coefficients (and provenance) as JSON that `load_coefficients` reads back."""
    record = {"format": FILE_FORMAT, "version": FILE_VERSION, "alpha": coeffs.alpha,
              "beta": coeffs.beta, "gamma": coeffs.gamma, "target": coeffs.target,
              "product": coeffs.product, **coeffs.family,
              "provenance": dict(provenance or coeffs.provenance or {})}
    path = Path(path)
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path


def load_coefficients(path: str | Path) -> Coefficients:
    """Reads a coefficients file written by `save_coefficients` / `effsearch export`.

    Raises:
        CoefficientsError: if the file is missing, not JSON, not an effsearch coefficients
            file, or holds invalid values.
    """
    path = Path(path)
    record = read_json_file(path, "coefficients", CoefficientsError)
    if isinstance(record, dict) and record.get("format") == "effsearch.family":
        from space.family_file import coefficients_of  # a family file holds coefficients too

        return coefficients_of(record, str(path))
    if not isinstance(record, dict) or record.get("format") != FILE_FORMAT:
        raise CoefficientsError(f"{path} is not an effsearch coefficients file "
                                f"(expected \"format\": \"{FILE_FORMAT}\")")
    if record.get("version") not in (1, FILE_VERSION):
        raise CoefficientsError(f"{path} has coefficients format version "
                                f"{record.get('version')!r}; this effsearch reads "
                                f"versions 1 to {FILE_VERSION}")
    missing = [k for k in ("alpha", "beta", "gamma") if k not in record]
    if missing:
        raise CoefficientsError(f"{path} lacks {', '.join(missing)}")
    provenance = record.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise CoefficientsError(f"{path}: provenance must be an object")
    try:
        return Coefficients(record["alpha"], record["beta"], record["gamma"],
                            target=record.get("target", 2.0), provenance=provenance,
                            **{k: record[k] for k in _FAMILY_KEYS if k in record})
    except UserError as e:  # a bad number, or a baseline string that does not parse
        raise CoefficientsError(f"{path}: {e}") from None
