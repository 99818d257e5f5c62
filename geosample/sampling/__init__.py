"""``geosample plan``: H3 hierarchical, stratified, time-balanced sampling."""
