"""The ``mltrack`` command line: report, pricing, cost, config check."""
