"""The fixed words of rendered reports, in both languages."""

from __future__ import annotations

from grader.i18n import Lang, Msg

WORDS: dict[str, Msg] = {
    "title": Msg("PyTorch 练习评分报告", "PyTorch exercises: grading report"),
    "class_title": Msg("全班评分概览", "Class overview"),
    "exercise": Msg("练习", "exercise"),
    "points": Msg("得分", "points"),
    "tests_passed": Msg("通过的测试", "tests passed"),
    "failed_tests": Msg("未通过的测试", "Tests that did not pass"),
    "passed_tests": Msg("通过的测试", "Tests that passed"),
    "output": Msg("你的代码打印的内容", "What your code printed"),
    "truncated": Msg("已截断", "truncated"),
    "refused": Msg("提交未能评分", "The submission could not be graded"),
    "incomplete": Msg("有些测试无法在评测主机上运行，这份报告不完整（不是你的问题）。",
                      "Some tests could not run on the grading host, so this report is incomplete (not your doing)."),
    "not_submitted": Msg("未提交这个练习。", "This exercise was not submitted."),
    "problem": Msg("文件问题", "file problem"),
    "environment": Msg("评测环境", "Grading environment"),
    "expected": Msg("期望", "expected"),
    "got": Msg("得到", "got"),
    "shape": Msg("形状", "shape"),
    "max_abs": Msg("最大绝对误差", "max abs error"),
    "max_rel": Msg("该处相对误差", "rel error there"),
    "at_index": Msg("位于索引", "at index"),
    "error_map": Msg("误差分布（颜色越深误差越大）", "where the error is (darker: larger)"),
    "speed": Msg("每轮的耗时比（对数刻度）", "time ratio per round (log scale)"),
    "allowed": Msg("允许", "allowed"),
    # str.format fields, in this order: median ratio, allowed factor, rounds, lowest and highest ratio
    "speed_caption": Msg("耗时比中位数 {}×（允许 {}×），{} 轮，范围 {}× 至 {}×",
                         "median time ratio {}x (allowed {}x) over {} rounds, from {}x to {}x"),
    "threshold": Msg("要求", "required"),
    # fields: the metric's name, its value, the threshold
    "threshold_caption": Msg("{} 为 {}，要求至少 {}", "{} {}, at least {} required"),
    "threshold_below": Msg("上限", "limit"),
    "threshold_below_caption": Msg("{} 为 {}，要求低于 {}", "{} {}, below {} required"),
    "loss_curve": Msg("训练损失（每步）", "training loss per step"),
    "footer": Msg("由自动评测工具生成。隐藏测试只显示名称和提示。", "Made by torch-grader. Hidden tests show their name and hint only."),
    "footer_instructor": Msg("由自动评测工具生成（教师视图：包含隐藏测试的全部细节）。",
                             "Made by torch-grader (instructor view: hidden tests in full)."),
    "total": Msg("总分", "Total"),
    "status": Msg("状态", "status"),
    # class dashboard
    "submissions": Msg("份提交", "submissions"),
    "histogram": Msg("得分分布", "Score distribution"),
    "hardest": Msg("最多人未通过的测试", "Tests most students fail"),
    "common_message": Msg("最常见的提示", "most common message"),
    "durations": Msg("每份提交的评测时间", "Grading time per submission"),
    "median": Msg("中位数", "median"),
    "slowest": Msg("最长", "longest"),
    "causes": Msg("未通过的原因", "Failures by cause"),
    "student": Msg("学生", "student"),
    "per_student": Msg("每位学生", "Per student"),
    "grading_time": Msg("评测时间", "grading time"),
    "failed_by": Msg("未通过人数（提交了该练习的学生中）", "students failing (of those who submitted it)"),
    "seconds": Msg("秒", "s"),
}


def words(lang: Lang, audience: str = "student") -> dict[str, str]:
    found = {key: message.render(lang) for key, message in WORDS.items()}
    if audience == "instructor":
        found["footer"] = found["footer_instructor"]
    return found
