"""Text metrics for replies without tool calls (the guide's 5.3.1): exact match, ROUGE-L
(rouge-score), corpus BLEU and chrF (sacrebleu), and label accuracy / macro-F1 when examples carry
`metadata.label`. Perplexity comes from the loss on assistant tokens (`dsft.eval.tooluse.perplexity`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def _norm(text: str | None) -> str:
    return " ".join((text or "").split())


def text_scores(predictions: list[str | None], references: list[str | None],
                labels: list[str | None] | None = None) -> dict[str, Any]:
    """Aggregates over the pairs; None when there are no pairs."""
    pairs = [(_norm(p), _norm(r)) for p, r in zip(predictions, references)]
    if not pairs:
        return {"n": 0}
    import sacrebleu
    from rouge_score import rouge_scorer

    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    hyps, refs = [p for p, _ in pairs], [r for _, r in pairs]
    out: dict[str, Any] = {
        "n": len(pairs),
        "exact_match": sum(p == r for p, r in pairs) / len(pairs),
        "rougeL": sum(rouge.score(r, p)["rougeL"].fmeasure for p, r in pairs) / len(pairs),
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score / 100,
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score / 100,
    }
    if labels and any(label is not None for label in labels):
        out.update(label_scores([p for p, _ in pairs], labels))
    return out


def label_scores(predictions: list[str], labels: list[str | None]) -> dict[str, float]:
    """Accuracy and macro-F1 of the reply (case-folded, trimmed) as a class label."""
    gold = [(p.strip().casefold(), str(label).strip().casefold()) for p, label in zip(predictions, labels)
            if label is not None]
    classes = {g for _, g in gold}
    tp, fp, fn = defaultdict(int), defaultdict(int), defaultdict(int)
    for pred, g in gold:
        if pred == g:
            tp[g] += 1
        else:
            fn[g] += 1
            if pred in classes:
                fp[pred] += 1
    f1s = []
    for c in classes:
        p = tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else 0.0
        r = tp[c] / (tp[c] + fn[c]) if tp[c] + fn[c] else 0.0
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    return {"label_accuracy": sum(tp.values()) / len(gold), "label_macro_f1": sum(f1s) / len(f1s)}
