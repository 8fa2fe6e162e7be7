"""Query strategies: one interface (:class:`QueryStrategy`), higher score = label first."""

from lplgrad.strategies.badge import BADGE
from lplgrad.strategies.bald import BALD, BatchBALD
from lplgrad.strategies.base import Learner, QueryStrategy, ScoreContext, check_learner, select_top
from lplgrad.strategies.coreset import Coreset, k_center_greedy
from lplgrad.strategies.gradnorm import EntGradNorm, LPLgrad
from lplgrad.strategies.learning_loss import LearningLoss
from lplgrad.strategies.probcover import ProbCover
from lplgrad.strategies.random import Random
from lplgrad.strategies.switch import SwitchAt
from lplgrad.strategies.typiclust import TypiClust
from lplgrad.strategies.uncertainty import Entropy, LeastConfidence, Margin
from lplgrad.strategies.vaal import VAAL
from lplgrad.strategies.waal import WAAL

__all__ = [
    "BADGE",
    "BALD",
    "BatchBALD",
    "Coreset",
    "EntGradNorm",
    "Entropy",
    "LPLgrad",
    "Learner",
    "LearningLoss",
    "LeastConfidence",
    "Margin",
    "ProbCover",
    "QueryStrategy",
    "Random",
    "ScoreContext",
    "SwitchAt",
    "TypiClust",
    "VAAL",
    "WAAL",
    "check_learner",
    "k_center_greedy",
    "select_top",
]
