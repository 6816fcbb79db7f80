from obsmesh.cli import main

raise SystemExit(main())
