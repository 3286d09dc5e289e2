"""medslm.graphs."""
