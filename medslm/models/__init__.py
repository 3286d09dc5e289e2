"""medslm.models."""
