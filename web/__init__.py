"""The coaches' page: a portfolio of the cities a coach follows, served by `cda-bot serve`."""
