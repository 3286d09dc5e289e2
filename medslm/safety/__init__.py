"""medslm.safety."""
