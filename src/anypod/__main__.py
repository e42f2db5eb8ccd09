from __future__ import annotations

from anypod.cli import main

main()
