import sys
from pathlib import Path

# tests/ helpers (netplan_cli) importable from every test folder.
sys.path.insert(0, str(Path(__file__).parent))
