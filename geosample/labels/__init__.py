"""Labels: taxonomies of land use / land cover classes and the labels computed with them."""

from geosample.labels.taxonomy import TaxonClass, Taxonomy, load_taxonomy

__all__ = ["TaxonClass", "Taxonomy", "load_taxonomy"]
