"""The Odoo 16 to 19 adapter: polling intake, write-back, prices, stock."""
