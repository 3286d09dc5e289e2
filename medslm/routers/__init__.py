"""medslm.routers."""
