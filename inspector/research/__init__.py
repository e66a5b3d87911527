"""Research tools apart from the product: accuracy evaluation on MVTec-layout data, the speed
benchmark and N-pad's ablation.  They use the engine (``inspector.core``); nothing in the product
imports them except the CLI commands that run them."""
