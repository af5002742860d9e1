DROP TABLE stats_gaps;
DROP TABLE stats_watermark;
DROP TABLE stats_balance_daily;
DROP TABLE stats_daily;
