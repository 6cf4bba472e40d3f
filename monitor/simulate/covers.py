"""The land covers the simulator knows: declared crops (RPG codes) and the land between parcels.

Each cover carries its phenology (a double-logistic green-cover curve with per-parcel jitter),
its practices (harvest, ploughing, mowing), its surface make-up and its SAR vegetation. Days are
days of the season's year (1 = 1 January; negative or small values for autumn-sown crops are
simply "before the season").

Crop codes follow the French RPG (`code_cultu`):

| code | crop | share by default |
| --- | --- | --- |
| PPH | permanent grassland (prairie permanente) | 20 % |
| PRL | temporary grassland / long rotation meadow | 10 % |
| BTH | winter soft wheat (blé tendre d'hiver) | 20 % |
| ORH | winter barley (orge d'hiver) | 7 % |
| MIS | maize (maïs) | 15 % |
| CZH | winter rapeseed (colza d'hiver) | 5 % |
| TRN | sunflower (tournesol) | 2 % |
| BTN | sugar beet (betterave non fourragère) | 7 % |
| PTC | potato (pomme de terre de consommation) | 8 % |
| J6S | fallow (jachère) | 6 % |

Land that no parcel declares: FOR (forest), URB (built-up), EAU (water), and MRG (the
hedges, verges and roads between fields; pixels outside every polygon).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.errors import ConfigError


@dataclass(frozen=True)
class Cover:
    """One land cover. Dates are days of year; `nan`-like absent practices are `None`."""

    code: str
    name: str
    declared: bool  # a crop a farmer declares (appears in the parcel file)
    share: float  # default share among declared parcels
    # green-cover phenology: f = f_lo + (f_max-f_lo)·S(t; sos) - (f_max-f_end)·S(t; eos)
    f_lo: float
    f_max: float
    f_end: float
    sos: float
    eos: float
    r_up: float = 8.0
    r_down: float = 8.0
    jitter: float = 8.0  # per-parcel std of sowing/green-up and senescence, days
    harvest: float | None = None  # mean harvest day
    harvest_jitter: float = 8.0
    residue_after_harvest: float = 0.0  # straw/stubble fraction left by the harvest
    plough_after_harvest: float = 0.0  # probability of ploughing 5-40 days after harvest
    spring_plough: float | None = None  # days before green-up when the seedbed is ploughed
    mowings: tuple[int, int] = (0, 0)  # min, max number of mowings
    first_mowing: float = 140.0
    dry_standing: float = 0.0  # share of the lost green that stays as dry standing crop
    flowering: float | None = None  # day of peak yellow flowering (rapeseed)
    urban: float = 0.0  # fraction of built/asphalt surface
    water: float = 0.0
    shade: float = 0.0  # canopy shadow, darkens every band (forest)
    vwc_max: float = 1.0  # vegetation water content at full cover, kg/m² (SAR)
    roughness: float = 1.3  # soil rms height, cm, when not freshly ploughed
    canopy_db: tuple[float, float] = (-12.5, -18.0)  # γ⁰ VV, VH of a dense canopy
    # within-field texture: amplitudes of smooth patches (soil, drainage, uneven emergence) and
    # of per-pixel grain; each parcel draws its own around them
    texture: tuple[float, float] = (0.8, 0.6)


COVERS: tuple[Cover, ...] = (
    # land between parcels; index 0 is the background of the label raster
    Cover("MRG", "hedges, verges and roads", False, 0.0, 0.40, 0.55, 0.40, 110, 290,
          urban=0.30, vwc_max=1.5, jitter=0.0, canopy_db=(-10.0, -16.0)),
    Cover("PPH", "permanent grassland", True, 0.20, 0.72, 0.96, 0.78, 88, 300, r_up=12,
          r_down=15, mowings=(1, 4), first_mowing=140, vwc_max=1.8, texture=(1.0, 0.4)),
    Cover("PRL", "temporary grassland", True, 0.10, 0.68, 0.96, 0.78, 85, 300, r_up=10,
          r_down=15, mowings=(2, 4), first_mowing=132, vwc_max=2.0, texture=(0.9, 0.35)),
    Cover("BTH", "winter soft wheat", True, 0.20, 0.35, 0.96, 0.06, 86, 178, r_up=9, r_down=6,
          harvest=208, residue_after_harvest=0.65, plough_after_harvest=0.7, dry_standing=0.85,
          vwc_max=3.5, canopy_db=(-12.5, -16.0), texture=(0.55, 0.45)),
    Cover("ORH", "winter barley", True, 0.07, 0.35, 0.94, 0.06, 84, 165, r_up=9, r_down=6,
          harvest=192, residue_after_harvest=0.6, plough_after_harvest=0.7, dry_standing=0.85,
          vwc_max=3.0, canopy_db=(-12.0, -16.0), texture=(0.6, 0.45)),
    Cover("MIS", "maize", True, 0.15, 0.0, 0.95, 0.25, 160, 255, r_up=7, r_down=9,
          harvest=272, harvest_jitter=14, residue_after_harvest=0.35, plough_after_harvest=0.3,
          spring_plough=40, vwc_max=6.0, canopy_db=(-8.5, -13.0), texture=(0.75, 0.8)),
    Cover("CZH", "winter rapeseed", True, 0.05, 0.55, 0.93, 0.10, 70, 170, r_up=10, r_down=7,
          harvest=195, residue_after_harvest=0.55, plough_after_harvest=0.6, dry_standing=0.8,
          flowering=118, vwc_max=4.0, canopy_db=(-9.0, -13.5), texture=(0.8, 0.6)),
    Cover("TRN", "sunflower", True, 0.02, 0.0, 0.85, 0.10, 150, 232, r_up=7, r_down=8,
          harvest=258, residue_after_harvest=0.45, plough_after_harvest=0.4, spring_plough=40,
          dry_standing=0.7, vwc_max=4.0, canopy_db=(-9.0, -14.0), texture=(0.8, 0.8)),
    Cover("BTN", "sugar beet", True, 0.07, 0.0, 0.93, 0.70, 150, 300, r_up=9, r_down=12,
          harvest=290, harvest_jitter=15, residue_after_harvest=0.1, plough_after_harvest=0.2,
          spring_plough=55, vwc_max=4.5, canopy_db=(-8.5, -13.5), texture=(0.7, 0.7)),
    Cover("PTC", "potato", True, 0.08, 0.0, 0.92, 0.05, 158, 218, r_up=7, r_down=6,
          harvest=248, harvest_jitter=12, residue_after_harvest=0.05, plough_after_harvest=0.3,
          spring_plough=50, dry_standing=0.3, vwc_max=3.0, canopy_db=(-9.5, -14.5),
          texture=(0.7, 0.8)),
    Cover("J6S", "fallow", True, 0.06, 0.45, 0.75, 0.50, 100, 280, r_up=12, r_down=15,
          mowings=(0, 1), first_mowing=190, vwc_max=1.5, texture=(1.4, 0.8)),
    Cover("FOR", "forest", False, 0.0, 0.40, 0.92, 0.40, 118, 292, r_up=6, r_down=9,
          shade=0.30, vwc_max=12.0, jitter=4.0, canopy_db=(-8.0, -13.5), texture=(1.2, 1.0)),
    Cover("URB", "built-up", False, 0.0, 0.12, 0.18, 0.12, 110, 290, urban=0.85, vwc_max=0.5,
          jitter=0.0),
    Cover("EAU", "water", False, 0.0, 0.0, 0.0, 0.0, 110, 290, water=1.0, vwc_max=0.0,
          jitter=0.0, texture=(0.3, 0.3)),
)  # fmt: skip

INDEX = {cover.code: i for i, cover in enumerate(COVERS)}
MARGIN = INDEX["MRG"]
DECLARED = tuple(c.code for c in COVERS if c.declared)
GRASSLAND = frozenset({"PPH", "PRL"})


def crop_shares(spec: str | None) -> dict[str, float]:
    """Parse `--crops`: `"PPH,BTH=2,MIS"` → normalised shares; `None` → the default mix.

    A bare code takes its default share (or 1 when it has none); unknown codes are refused.
    """
    if spec is None or not spec.strip():
        shares = {c.code: c.share for c in COVERS if c.declared}
    else:
        shares = {}
        for part in spec.split(","):
            code, _, weight = part.strip().partition("=")
            code = code.strip().upper()
            if code not in DECLARED:
                known = ", ".join(DECLARED)
                raise ConfigError(f"unknown crop code {code!r} (known: {known})")
            try:
                value = float(weight) if weight else COVERS[INDEX[code]].share
            except ValueError:
                raise ConfigError(f"crop {code}: weight {weight!r} is not a number") from None
            if not value > 0:
                raise ConfigError(f"crop {code}: weight must be positive, got {weight!r}")
            shares[code] = value
    total = sum(shares.values())
    return {code: value / total for code, value in shares.items()}
