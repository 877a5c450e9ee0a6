from soteacher.cli import main

raise SystemExit(main())
