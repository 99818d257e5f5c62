"""The exceptions and warnings geosample raises.

Every user mistake is a :class:`GeosampleError`; the CLI prints its message
as one line and exits with status 2. Subclasses also inherit the builtin they
refine, so ``except ValueError`` keeps working for library users.
"""

from __future__ import annotations


class GeosampleError(Exception):
    """Root of geosample's errors: a problem the user can fix."""


class ConfigError(GeosampleError, ValueError):
    """A parameter, flag or config value is invalid."""


class AOIError(GeosampleError, ValueError):
    """The area of interest cannot be read or is unusable."""


class LayerError(GeosampleError, ValueError):
    """A reference or user layer cannot be read or has no usable values."""


class CapacityError(GeosampleError, ValueError):
    """More samples were asked for than the area can hold under the spacing rule."""


class DatasetError(GeosampleError, ValueError):
    """The dataset folder is missing, incomplete or inconsistent."""


class PlanError(DatasetError):
    """``plan.parquet`` holds values no stage can use (an unsafe or duplicated id, a NaN coordinate, ...)."""


class UnsafeInputError(GeosampleError, ValueError):
    """A plan, manifest, catalogue or config asks for something geosample refuses to do.

    A path outside the dataset folder, a local file named by a remote catalogue,
    an environment variable or a Python callable chosen by a config file, a
    YAML file that expands without bound.
    """


class TaxonomyError(GeosampleError, ValueError):
    """A taxonomy file is invalid, or a class code or scheme is not in it."""


class SourceError(GeosampleError, ValueError):
    """A label or imagery source (raster, vector, STAC API) cannot be used."""


class StacError(GeosampleError, OSError):
    """A STAC API or catalogue is unreachable or answered something that is not STAC."""


class PluginError(GeosampleError, LookupError):
    """A caption backend or encoder is unknown or could not be loaded."""


class GeosampleWarning(UserWarning):
    """Root of geosample's warnings: odd but not fatal."""


class CapacityWarning(GeosampleWarning):
    """A stratum could not hold its share; the remainder went to the others."""


class ShortfallWarning(GeosampleWarning):
    """Failed samples that no reserve site could replace: some strata of the dataset fall short of the plan."""


class GeometryRepairWarning(GeosampleWarning):
    """An input geometry was invalid and was repaired with ``make_valid``."""


class PluginWarning(GeosampleWarning):
    """An installed plugin failed to load and was skipped."""


class DataQualityWarning(GeosampleWarning):
    """Data is usable but odd: a chip mostly nodata, unmapped source values, a sample without labels."""


class ObservationWarning(DataQualityWarning):
    """The chips' bands cannot show some observation (cloud, a cover class); it is left null, not guessed."""


class CoarseSourceWarning(DataQualityWarning):
    """A label source is coarser than an eighth of the chip: its labels describe the neighbourhood, not the chip."""


class ConsentWarning(GeosampleWarning):
    """A config file asked for something only the command line may fully grant, and got less.

    For instance a loopback caption endpoint chosen by a config file alone: it is used, without the API key.
    """
