from medslm.cli import main

main()
