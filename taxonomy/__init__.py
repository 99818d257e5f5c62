"""The taxonomies shipped with geosample, installed as ``geosample.taxonomies``.

``geosample/taxonomies`` is a symbolic link to this folder, so the files live
where users look for them (the top-level ``taxonomy/``) and still install as
package data that ``importlib.resources`` finds from any directory.
"""
