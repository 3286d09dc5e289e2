"""medslm.evals."""
