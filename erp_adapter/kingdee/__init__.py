"""The Kingdee K3Cloud (金蝶云星空) adapter: polling intake, write-back, prices, stock."""
