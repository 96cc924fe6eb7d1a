from dsft.cli import main

main()
