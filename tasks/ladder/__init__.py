"""The adaptation ladder: simple rungs first, deeper ones only when the gate sees a gain.

Tasks:
- ``assessment.assess_data``, ``assessment.plan_ladder``: what the data says, how rungs are scored;
- ``features.extract_frozen_features``: frozen-backbone features, cached by content;
- ``scratch_baseline.train_scratch_baseline``: TF-IDF + a linear SVM, the yardstick;
- ``frozen_rung.train_frozen_rung``: frozen features + a head;
- ``rung_training.train_ladder_rung``, ``rung_training.refit_selected_rung``: adapted rungs
  under the evaluation plan, and the final refit;
- ``finetuning.train_adapted_rung``: one fit of an adapted rung (also a multi-process worker);
- ``escalation.decide_escalation``, ``escalation.select_final_rung``: the gate's I/O;
- ``transfer_note.write_transfer_note``: what the ladder did and why.

Plain modules: ``cross_validation`` (folds shared by every rung) and ``training_slot``
(one training per model at a time, a Prefect concurrency limit).
"""
