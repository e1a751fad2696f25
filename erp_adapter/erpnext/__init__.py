"""The ERPNext adapter: polling intake, write-back, prices, stock."""
