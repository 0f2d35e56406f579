"""The planner learner (``planner-v1``): each device identifies its own house and plans ahead.

- :mod:`.config`: its typed config (read without torch or numpy work);
- :mod:`.identification`: recursive least squares of an RC model, in information form, with
  forgetting, a prior and a check that the estimate is physical;
- :mod:`.planning`: dynamic programming over the identified model, the schedule, the tariff and
  the weather forecast (the pieces of :mod:`fleet.optimum`);
- :mod:`.learner`: the learner the engine and the edge agent drive, and its diffusion of
  identification statistics between neighbours.
"""
