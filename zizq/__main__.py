from zizq.cli import main

raise SystemExit(main())
