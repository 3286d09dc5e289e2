"""medslm.knowledge."""
