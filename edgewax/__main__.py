from edgewax.cli import main

raise SystemExit(main())
