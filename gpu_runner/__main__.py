from gpu_runner.cli import main

main()
