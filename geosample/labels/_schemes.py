"""The source schemes geosample knows in full, so crosswalks can be checked for completeness.

Each scheme maps its source values (as text, the way crosswalk keys are stored)
to the source's own class names. ``osm`` is open-ended and has no list.
"""

from __future__ import annotations

#: ESA WorldCover 10 m (v100, v200) class values; 0 is no data.
ESA_WORLDCOVER = {
    "10": "Tree cover",
    "20": "Shrubland",
    "30": "Grassland",
    "40": "Cropland",
    "50": "Built-up",
    "60": "Bare / sparse vegetation",
    "70": "Snow and ice",
    "80": "Permanent water bodies",
    "90": "Herbaceous wetland",
    "95": "Mangroves",
    "100": "Moss and lichen",
}

#: MODIS IGBP classes by value as in geosample's embedded MCD12C1 layer (255 is no data).
MODIS_IGBP = {
    "0": "water",
    "1": "evergreen_needleleaf_forest",
    "2": "evergreen_broadleaf_forest",
    "3": "deciduous_needleleaf_forest",
    "4": "deciduous_broadleaf_forest",
    "5": "mixed_forest",
    "6": "closed_shrublands",
    "7": "open_shrublands",
    "8": "woody_savannas",
    "9": "savannas",
    "10": "grasslands",
    "11": "permanent_wetlands",
    "12": "croplands",
    "13": "urban_and_built_up",
    "14": "cropland_natural_vegetation_mosaic",
    "15": "snow_and_ice",
    "16": "barren",
}

#: CORINE Land Cover level-3 nomenclature (44 classes).
CORINE = {
    "111": "Continuous urban fabric",
    "112": "Discontinuous urban fabric",
    "121": "Industrial or commercial units",
    "122": "Road and rail networks and associated land",
    "123": "Port areas",
    "124": "Airports",
    "131": "Mineral extraction sites",
    "132": "Dump sites",
    "133": "Construction sites",
    "141": "Green urban areas",
    "142": "Sport and leisure facilities",
    "211": "Non-irrigated arable land",
    "212": "Permanently irrigated land",
    "213": "Rice fields",
    "221": "Vineyards",
    "222": "Fruit trees and berry plantations",
    "223": "Olive groves",
    "231": "Pastures",
    "241": "Annual crops associated with permanent crops",
    "242": "Complex cultivation patterns",
    "243": "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "244": "Agro-forestry areas",
    "311": "Broad-leaved forest",
    "312": "Coniferous forest",
    "313": "Mixed forest",
    "321": "Natural grasslands",
    "322": "Moors and heathland",
    "323": "Sclerophyllous vegetation",
    "324": "Transitional woodland-shrub",
    "331": "Beaches, dunes, sands",
    "332": "Bare rocks",
    "333": "Sparsely vegetated areas",
    "334": "Burnt areas",
    "335": "Glaciers and perpetual snow",
    "411": "Inland marshes",
    "412": "Peat bogs",
    "421": "Salt marshes",
    "422": "Salines",
    "423": "Intertidal flats",
    "511": "Water courses",
    "512": "Water bodies",
    "521": "Coastal lagoons",
    "522": "Estuaries",
    "523": "Sea and ocean",
}

#: CORINE Land Cover rasters store the 44 classes as GRID_CODE 1-44, in code order (48 is no data).
CORINE_RASTER = {str(i): f"{code} {name}" for i, (code, name) in enumerate(CORINE.items(), start=1)}

#: Google Dynamic World V1 ``label`` band.
DYNAMIC_WORLD = {
    "0": "water",
    "1": "trees",
    "2": "grass",
    "3": "flooded_vegetation",
    "4": "crops",
    "5": "shrub_and_scrub",
    "6": "built",
    "7": "bare",
    "8": "snow_and_ice",
}

#: Impact Observatory / Esri 10 m annual land use land cover, version 2 (``io-lulc-annual-v02``); 0 is no data
#: and 10 is clouds (no land cover seen), both left unmapped.
IO_LULC = {
    "1": "Water",
    "2": "Trees",
    "4": "Flooded vegetation",
    "5": "Crops",
    "7": "Built area",
    "8": "Bare ground",
    "9": "Snow/ice",
    "11": "Rangeland",
}

#: Schemes whose full value lists are known: every value must be mapped, no other may be.
BUILTIN_SCHEMES: dict[str, dict[str, str]] = {
    "esa-worldcover": ESA_WORLDCOVER,
    "io-lulc": IO_LULC,
    "modis-igbp": MODIS_IGBP,
    "corine": CORINE,
    "corine-raster": CORINE_RASTER,
    "dynamic-world": DYNAMIC_WORLD,
}

#: Values that mean "no data" in a scheme: never mapped to a class.
NODATA = {"esa-worldcover": {"0"}, "modis-igbp": {"255"}, "corine-raster": {"48"}, "io-lulc": {"0", "10"}}

#: OpenStreetMap tags: ``key=value`` or a bare ``key`` (any value); the list is open.
OSM_SCHEME = "osm"
