from rayvllm.cli import main

raise SystemExit(main())
