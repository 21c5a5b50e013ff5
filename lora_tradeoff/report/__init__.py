"""The report, the last stage: reading every model's results (`inputs`), the summary tables and
statistics (`summary`), the frontier of runs (`frontier`), the independent recomputation of the
headline (`checks`), the Markdown sections (`sections`), failure examples (`failures`), figures
(`plots`), HTML pages (`html`) and the one entry point that writes them all (`build`).
"""
