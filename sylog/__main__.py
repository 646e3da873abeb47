from sylog.cli import main

raise SystemExit(main())
