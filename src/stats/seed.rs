//! `payd seed --history-days N`: months of demo history for the statistics and dashboards.
