"""Whole-body tasks on the solver engine: closed-form Jacobians against autodiff, a balanced reach,
gradients through the answer, and the errors."""

import pytest
import torch

from robojac import ik, optim
from robojac.data import path as data_path
from robojac.kinematics import Chain, Joint, JointLimits, JointType

from helpers import max_err

FEET = ["left_sole_link", "right_sole_link"]
HANDS = ["gripper_left_base_link", "gripper_right_base_link"]


@pytest.fixture(scope="module")
def talos():
    return Chain.from_urdf(data_path("robots/talos_reduced.urdf")).with_floating_base()


def test_closed_forms_equal_autodiff(talos, device):
    chain = talos.to(device)
    gen = torch.Generator().manual_seed(0)
    Q = chain.random_configuration(3, 2, generator=gen, device=device)  # 3 problems, 2 factors each
    T = chain.forward_kinematics_tensor(chain.random_configuration(3, 2, generator=gen, device=device), FEET + HANDS)
    tasks = [(ik.FramesTask(chain, FEET + HANDS, position_only=[False, True, False, True], weights=[2.0, 1.0, 0.5, 3.0],
                            orientation_weight=0.3), T),
             (ik.CenterOfMassTask(chain, "xz", weight=4.0),
              torch.randn(3, 2, 2, dtype=torch.float64, generator=gen, device="cpu").to(device))]
    for task, data in tasks:
        r, (J,) = task.value_and_jacobians(Q, data)
        assert max_err(r, task(Q, data)) == 0.0
        auto = torch.func.jacrev(lambda x: task(x, data))(Q.clone())  # (3, 2, m, 3, 2, dof): each factor its own
        auto = torch.stack([torch.stack([auto[b, f, :, b, f] for f in range(2)]) for b in range(3)])
        assert J.shape == auto.shape and max_err(J, auto) < 1e-12
    r = tasks[0][0](Q, T).reshape(3, 2, 4, 6)
    assert (r[..., 1, 3:] == 0).all() and (r[..., 3, 3:] == 0).all()  # a position target's rotation rows


def _balance(talos, closed: bool, grad: bool = False):
    B = 3
    stand = torch.zeros(talos.dof, dtype=torch.float64)
    stand[2] = -float(talos.forward_kinematics_tensor(stand, FEET)[0, 2])
    X = talos.forward_kinematics_tensor(stand, FEET + HANDS)
    T = X.expand(B, 4, 7).clone()
    T[:, 2:, 0] += torch.tensor([0.2, 0.4, 0.55], dtype=torch.float64)[:, None]
    middle = X[:2, :2].mean(0).expand(B, 1, 2).clone().requires_grad_(grad)
    frames = ik.FramesTask(talos, FEET + HANDS, position_only=[False, False, True, True])
    com = ik.CenterOfMassTask(talos)
    q = optim.Variable("Rn", stand.expand(B, 1, -1).clone(), lower=talos.lower, upper=talos.upper, name="q")
    factors = [optim.Factor(frames if closed else (lambda Q, T: frames(Q, T)), [q], data=(T[:, None],)),
               optim.Factor(com if closed else (lambda Q, c: com(Q, c)), [q], data=(middle,))]
    config = optim.SolverConfig(termination=optim.TerminationConfig(max_iterations=400))
    return optim.solve([q], factors, config), T, middle


@pytest.mark.parametrize("closed", [True, False])
def test_a_balanced_reach_holds_every_task(talos, closed):
    """With the closed forms and with autodiff of the same residuals (a redundant body: the two
    may settle at different points of the same solution set)."""
    result, T, middle = _balance(talos, closed=closed)
    assert result.converged.all()
    q = result.values[0][:, 0]
    X = talos.forward_kinematics_tensor(q, FEET + HANDS)
    assert max_err(X[:, :2], T[:, :2]) < 1e-9 and max_err(X[:, 2:, :3], T[:, 2:, :3]) < 1e-9
    assert max_err(talos.center_of_mass(q)[:, :2], middle[:, 0].detach()) < 1e-9
    plain = ik.solve(talos, {f: T[:, k] if k < 2 else T[:, k, :3] for k, f in enumerate(FEET + HANDS)})
    assert (talos.center_of_mass(plain.q)[:, 0] - middle[:, 0, 0]).abs().max() > 0.05  # IK alone leaves it


def test_the_answer_follows_the_centre_of_mass_target(talos):
    result, _, middle = _balance(talos, closed=True, grad=True)
    c = talos.center_of_mass(result.values[0][:, 0])
    c[:, 0].sum().backward()  # d(answer's com x)/d(target): 1 along x, 0 along y (the task is met exactly)
    assert max_err(middle.grad[:, 0, 0], torch.ones(3, dtype=torch.float64)) < 1e-8
    assert middle.grad[:, 0, 1].abs().max() < 1e-8


def test_bad_tasks_are_refused_by_name(talos):
    with pytest.raises(TypeError, match="chain: expected a robojac Chain, got str"):
        ik.FramesTask("talos", FEET)
    with pytest.raises(ValueError, match="frame 'foot' does not exist"):
        ik.FramesTask(talos, ["foot"])
    with pytest.raises(ValueError, match=r"FramesTask.position_only: expected a bool or 2 bools"):
        ik.FramesTask(talos, FEET, position_only=[True])
    with pytest.raises(ValueError, match=r"FramesTask.weights: expected a positive finite number, got -1"):
        ik.FramesTask(talos, FEET, weights=[1, -1])
    with pytest.raises(ValueError, match=r"CenterOfMassTask.axes: expected some of 'x', 'y', 'z', each once"):
        ik.CenterOfMassTask(talos, "xx")
    eye = torch.tensor([0.0, 0, 0, 0, 0, 0, 1], device="cpu")
    bare = Chain([Joint("j", JointType.REVOLUTE, "a", "b", eye, (0, 0, 1), JointLimits(-1, 1))])
    with pytest.raises(ValueError, match="CenterOfMassTask.chain: chain 'chain' has no mass"):
        ik.CenterOfMassTask(bare)
    task = ik.FramesTask(talos, FEET)
    Q = torch.zeros(2, 1, talos.dof, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"FramesTask: expected targets T \(2, 1, 2, 7\)"):
        task(Q, torch.zeros(2, 2, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"CenterOfMassTask: expected configurations \(B, F, {talos.dof}\)"):
        ik.CenterOfMassTask(talos)(Q[:, 0], torch.zeros(2, 1, 2, dtype=torch.float64))
