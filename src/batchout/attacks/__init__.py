"""Adversarial attacks in pixel space (L-infinity budgets on [0, 1] images), behind one registry.

Usage: ``from batchout.attacks.registry import create_attack; x_adv = create_attack("pgd", model)(x, y, 0.3)``;
or one attack directly: ``from batchout.attacks.fgsm import FGSM``

Nothing is imported here: importing one attack module (adversarial training imports FGSM and PGD)
must not import the others, so that editing APGD retrains nothing (dvc.yaml's deps follow imports).
``registry`` imports them all, on first use. params.yaml names are checked against
``batchout.names.ATTACKS``. Attacks know nothing of MLflow, files or training: model, images and
budget in, adversarial images out.
"""
