"""Shogi constants shared by every Keisei architecture: board, observation planes, action space."""

from __future__ import annotations

from typing import Final

__all__ = [
    "BOARD_SIZE",
    "INPUT_PLANES",
    "NUM_ACTIONS",
    "NUM_BOARD_MOVES",
    "NUM_DROP_MOVES",
    "OBSERVATION_SHAPE",
]

#: Shogi is played on a 9x9 board.
BOARD_SIZE: Final = 9
#: Keisei's "core46" observation: piece planes for both sides, hands, side to move, move count.
INPUT_PLANES: Final = 46
#: 81 from-squares x 80 to-squares x promote-or-not, as Keisei's PolicyOutputMapper enumerates them.
NUM_BOARD_MOVES: Final = 12_960
#: 7 droppable piece types x 81 squares.
NUM_DROP_MOVES: Final = 567
#: Size of the policy head: every board move and every drop.
NUM_ACTIONS: Final = NUM_BOARD_MOVES + NUM_DROP_MOVES
#: Shape of one observation, without the batch dimension.
OBSERVATION_SHAPE: Final = (INPUT_PLANES, BOARD_SIZE, BOARD_SIZE)

assert NUM_ACTIONS == 13_527
