"""medslm.agents."""
