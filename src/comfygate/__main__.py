from comfygate.cli import main

main()
